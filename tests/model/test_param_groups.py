"""`TarViS.param_groups` and `no_weight_decay` on the real models (built on the meta device) against SPEC §5.4:
the per-frame backbone at lr × 0.1; no weight decay for norms, `decoder.scale_embed`, the query tables, the object
encoder's three embeds and the neck's level embeds; Swin's relative position bias tables keep theirs.

The expected no-decay set is written from the checkpoint key names (SPEC §8), not from the model's module types.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tarvis_fast.config import load_config
from tarvis_fast.model import TarViS, build_model

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "finetune_resnet50_swin-tiny.yaml"
LR, WD = 1e-4, 0.05

# SPEC §8 names of parameters without weight decay: a norm at `norm`, `norm1`, `norm2`, `norm0..3`,
# `decoder_norm` or the GroupNorm at `input_proj.{l}.1`; the embedding tables and embeds.
NO_DECAY = re.compile(
    r".*(\.|^)(norm\d?|decoder_norm)\.(weight|bias)"
    r"|backbone\.fpn\.input_proj\.\d\.1\.(weight|bias)"
    r"|embedding_container\..*"
    r"|decoder\.scale_embed\.weight"
    r"|vos_query_extractor\.(mask_object_query_embed|bg_query_embed|point_object_query_embed)"
    r"|backbone\.fpn\.transformer\.level_embed(_3d)?"
)


def real_model(backbone: str) -> TarViS:
    cfg = load_config(CONFIG, ["--cfg.model.backbone", backbone])
    with torch.device("meta"):
        return build_model(cfg)


def groups_by_name(model: TarViS) -> dict[str, set[str]]:
    """group name -> the names of its parameters"""
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {names[id(p)] for p in g["params"]} for g in model.param_groups(LR, WD)}


@pytest.mark.parametrize("backbone", ["SwinTiny", "ResNet50"])
def test_every_parameter_is_in_exactly_one_group(backbone: str) -> None:
    model = real_model(backbone)
    groups = model.param_groups(LR, WD)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    expected = {"backbone": (LR * 0.1, WD), "backbone_no_decay": (LR * 0.1, 0.0), "head": (LR, WD),
                "head_no_decay": (LR, 0.0)}
    if backbone == "ResNet50":  # frozen batch norm: buffers only, no backbone parameter without decay
        del expected["backbone_no_decay"]
    assert settings == expected


@pytest.mark.parametrize("backbone", ["SwinTiny", "ResNet50"])
def test_no_weight_decay_is_the_spec_list(backbone: str) -> None:
    model = real_model(backbone)
    expected = {name for name, _ in model.named_parameters() if NO_DECAY.fullmatch(name)}
    assert model.no_weight_decay() == expected
    groups = groups_by_name(model)
    assert groups.get("backbone_no_decay", set()) | groups["head_no_decay"] == expected
    assert all(name.startswith("backbone.backbone.") for name in groups["backbone"])
    assert not any(name.startswith("backbone.backbone.") for name in groups["head"] | groups["head_no_decay"])


def test_the_listed_parameters_are_where_spec_5_4_puts_them() -> None:
    groups = groups_by_name(real_model("SwinTiny"))
    block = "backbone.backbone.layers.0.blocks.0."
    assert {f"{block}attn.relative_position_bias_table", f"{block}attn.qkv.weight", f"{block}attn.qkv.bias",
            "backbone.backbone.patch_embed.proj.weight"} <= groups["backbone"]
    assert {f"{block}norm1.weight", "backbone.backbone.norm3.bias", "backbone.backbone.patch_embed.norm.weight",
            "backbone.backbone.layers.0.downsample.norm.weight"} <= groups["backbone_no_decay"]
    assert {"decoder.scale_embed.weight", "embedding_container._semantic_queries",
            "embedding_container._instance_queries", "embedding_container._vos_queries",
            "vos_query_extractor.bg_query_embed", "vos_query_extractor.point_object_query_embed",
            "backbone.fpn.transformer.level_embed", "backbone.fpn.transformer.level_embed_3d",
            "backbone.fpn.input_proj.0.1.weight", "backbone.fpn.adapter_1.norm.weight",
            "decoder.decoder_norm.weight"} <= groups["head_no_decay"]
    assert {"decoder.transformer_self_attention_layers.0.self_attn.in_proj_weight", "backbone.fpn.mask_features.bias",
            "backbone.fpn.transformer.encoder.layers.0.self_attn.sampling_offsets.bias",
            "vos_query_extractor.point_vos_query_extractor.layers.0.weight"} <= groups["head"]


def test_frozen_parameters_are_left_out_and_the_backbone_factor_applies() -> None:
    model = real_model("SwinTiny")
    model.backbone.backbone.requires_grad_(False)
    groups = model.param_groups(1.0, 0.1, backbone_lr_factor=0.5)
    assert [g["name"] for g in groups] == ["head", "head_no_decay"]
    model.backbone.backbone.requires_grad_(True)
    assert {g["name"]: g["lr"] for g in model.param_groups(1.0, 0.1, backbone_lr_factor=0.5)}["backbone"] == 0.5
