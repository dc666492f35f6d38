"""Expected state_dict keys and shapes of the original TarViS checkpoints, written from SPEC §8 alone (not from
the model code): for ResNet-50, Swin-T and Swin-L, with a given number of semantic query rows (383 after
pre-training, 228 after fine-tuning)."""
from __future__ import annotations

C = 256  # hidden width of everything after the backbone


def resnet_keys(blocks_per_stage: tuple[int, ...] = (3, 4, 6, 3)) -> dict[str, tuple[int, ...]]:
    """detectron2 ResNet with FrozenBN (blocks (3, 4, 6, 3) for R-50, (3, 4, 23, 3) for R-101): every conv has
    a 4-buffer norm at `<conv>.norm`."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        keys[f"{name}.weight"] = (out, inp, k, k)
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.norm.{buffer}"] = (out,)

    conv("stem.conv1", 64, 3, 7)
    in_ch = 64
    for stage, (blocks, mid) in enumerate(zip(blocks_per_stage, (64, 128, 256, 512)), 2):
        out = 4 * mid
        for k in range(blocks):
            block = f"res{stage}.{k}"
            conv(f"{block}.conv1", mid, in_ch if k == 0 else out, 1)
            conv(f"{block}.conv2", mid, mid, 3)
            conv(f"{block}.conv3", out, mid, 1)
            if k == 0:
                conv(f"{block}.shortcut", out, in_ch, 1)
        in_ch = out
    return keys


def swin_keys(c0: int, depths: list[int], heads: list[int], window: int) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (c0, 3, 4, 4), "patch_embed.proj.bias": (c0,),
        "patch_embed.norm.weight": (c0,), "patch_embed.norm.bias": (c0,),
    }
    for i, (depth, h) in enumerate(zip(depths, heads)):
        ci = c0 * 2**i
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            keys.update({
                f"{b}.norm1.weight": (ci,), f"{b}.norm1.bias": (ci,),
                f"{b}.attn.relative_position_bias_table": ((2 * window - 1) ** 2, h),
                f"{b}.attn.relative_position_index": (window**2, window**2),
                f"{b}.attn.qkv.weight": (3 * ci, ci), f"{b}.attn.qkv.bias": (3 * ci,),
                f"{b}.attn.proj.weight": (ci, ci), f"{b}.attn.proj.bias": (ci,),
                f"{b}.norm2.weight": (ci,), f"{b}.norm2.bias": (ci,),
                f"{b}.mlp.fc1.weight": (4 * ci, ci), f"{b}.mlp.fc1.bias": (4 * ci,),
                f"{b}.mlp.fc2.weight": (ci, 4 * ci), f"{b}.mlp.fc2.bias": (ci,),
            })
        if i < 3:
            keys[f"layers.{i}.downsample.reduction.weight"] = (2 * ci, 4 * ci)
            keys[f"layers.{i}.downsample.norm.weight"] = (4 * ci,)
            keys[f"layers.{i}.downsample.norm.bias"] = (4 * ci,)
        keys[f"norm{i}.weight"] = (ci,)
        keys[f"norm{i}.bias"] = (ci,)
    return keys


def linear(name: str, out: int, inp: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}


def norm(name: str) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (C,), f"{name}.bias": (C,)}


def mha(name: str) -> dict[str, tuple[int, ...]]:
    return {f"{name}.in_proj_weight": (3 * C, C), f"{name}.in_proj_bias": (3 * C,), **linear(f"{name}.out_proj", C, C)}


def neck_keys(res2: int, res3: int, res4: int, res5: int) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i, channels in enumerate([res5, res4, res3]):
        keys.update({f"input_proj.{i}.0.weight": (C, channels, 1, 1), f"input_proj.{i}.0.bias": (C,)})
        keys.update(norm(f"input_proj.{i}.1"))
    keys["transformer.level_embed"] = (3, C)
    keys["transformer.level_embed_3d"] = (3, C)
    for i in range(6):
        layer = f"transformer.encoder.layers.{i}"
        keys.update(linear(f"{layer}.self_attn.sampling_offsets", 192, C))
        keys.update(linear(f"{layer}.self_attn.attention_weights", 96, C))
        keys.update(linear(f"{layer}.self_attn.value_proj", C, C))
        keys.update(linear(f"{layer}.self_attn.output_proj", C, C))
        temporal = f"transformer.encoder.temporal_layers.{i}"
        keys.update(mha(f"{temporal}.self_attn"))
        for prefix in (layer, temporal):
            keys.update({**norm(f"{prefix}.norm1"), **norm(f"{prefix}.norm2")})
            keys.update({**linear(f"{prefix}.linear1", 1024, C), **linear(f"{prefix}.linear2", C, 1024)})
    keys.update({"mask_features.weight": (C, C, 1, 1), "mask_features.bias": (C,)})
    keys.update({"adapter_1.weight": (C, res2, 1, 1), **norm("adapter_1.norm")})
    keys.update({"layer_1.weight": (C, C, 3, 3), **norm("layer_1.norm")})
    return keys


def decoder_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(9):
        keys.update(mha(f"transformer_self_attention_layers.{i}.self_attn"))
        keys.update(norm(f"transformer_self_attention_layers.{i}.norm"))
        keys.update(mha(f"transformer_cross_attention_layers.{i}.multihead_attn._attn"))
        keys.update(norm(f"transformer_cross_attention_layers.{i}.norm"))
        keys.update(linear(f"transformer_ffn_layers.{i}.linear1", 2048, C))
        keys.update(linear(f"transformer_ffn_layers.{i}.linear2", C, 2048))
        keys.update(norm(f"transformer_ffn_layers.{i}.norm"))
    keys.update(norm("decoder_norm"))
    keys["scale_embed.weight"] = (3, C)
    for group in ("background", "semantic", "background_vos", "vos", "instance", "free"):
        for j in range(3):
            keys.update(linear(f"mask_embeds.{group}.layers.{j}", C, C))
        if group != "free":
            keys.update(linear(f"proj_layers.{group}", C, C))
    return keys


def object_encoder_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {
        "mask_object_query_embed": (C,), "bg_query_embed": (C,), "point_object_query_embed": (C,),
        "bg_grid_size": (2,),
    }
    for i in range(4):
        keys.update({**mha(f"cross_attn_layers.{i}.attn"), **norm(f"cross_attn_layers.{i}.norm")})
        keys.update({**mha(f"self_attn_layers.{i}.attn"), **norm(f"self_attn_layers.{i}.norm")})
        keys.update(linear(f"ffn_layers.{i}.mlp.0", 2048, C))
        keys.update(linear(f"ffn_layers.{i}.mlp.2", C, 2048))
        keys.update(norm(f"ffn_layers.{i}.norm"))
        keys.update(linear(f"proj_point_features.{i}", C, C))
    keys.update(linear("point_vos_query_extractor.layers.0", C, 4 * C))
    keys.update(linear("point_vos_query_extractor.layers.2", C, C))
    keys.update(linear("point_vos_query_extractor.layers.4", C, C))
    return keys


BACKBONES = {
    "ResNet50": (resnet_keys, (256, 512, 1024, 2048)),
    "SwinTiny": (lambda: swin_keys(96, [2, 2, 6, 2], [3, 6, 12, 24], 7), (96, 192, 384, 768)),
    "SwinLarge": (lambda: swin_keys(192, [2, 2, 18, 2], [6, 12, 24, 48], 12), (192, 384, 768, 1536)),
}


def expected_keys(backbone: str, num_semantic_rows: int) -> dict[str, tuple[int, ...]]:
    backbone_keys, channels = BACKBONES[backbone]
    keys: dict[str, tuple[int, ...]] = {"pixel_mean": (3,), "pixel_std": (3,)}
    keys.update({f"backbone.backbone.{k}": v for k, v in backbone_keys().items()})
    keys.update({f"backbone.fpn.{k}": v for k, v in neck_keys(*channels).items()})
    keys.update({
        "embedding_container._semantic_queries": (num_semantic_rows, C),
        "embedding_container._background_queries": (2, C),
        "embedding_container._background_vos_queries": (2, C),
        "embedding_container._instance_queries": (129, C),
        "embedding_container._vos_queries": (1, C),
    })
    keys.update({f"decoder.{k}": v for k, v in decoder_keys().items()})
    keys.update({f"vos_query_extractor.{k}": v for k, v in object_encoder_keys().items()})
    return keys
