"""The decoder against a float64 reference written from SPEC §2.6-2.7 with torch's nn.MultiheadAttention."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tarvis_fast.model.decoder import MaskedAttentionDecoder
from tarvis_fast.model.queries import QuerySet

C, HEADS = 32, 4


def sine_3d(frames: int, height: int, width: int) -> torch.Tensor:
    """(C, T, H, W) float64: [y features, x features] + time features, normalised coordinates (SPEC §2.3)."""
    f = C // 2

    def feats(n: int, count: int) -> torch.Tensor:
        coords = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1e-6) * 2 * math.pi
        k = torch.arange(count, dtype=torch.float64)
        angles = coords[:, None] / 10000 ** (2 * torch.div(k, 2, rounding_mode="floor") / count)
        return torch.where(k % 2 == 0, angles.sin(), angles.cos())  # (n, count)

    y, x, t = feats(height, f), feats(width, f), feats(frames, 2 * f)
    spatial = torch.cat([y[:, None, :].expand(height, width, f), x[None].expand(height, width, f)], -1)
    return (spatial[None] + t[:, None, None, :]).permute(3, 0, 1, 2)


def reference_decoder(decoder: MaskedAttentionDecoder, levels, mask_features, queries: QuerySet):
    """Predictions [(mask_logits, class_logits)] of SPEC §2.6-2.7, float64."""
    p = {k: v.double() for k, v in decoder.state_dict().items()}

    def mha(prefix: str) -> nn.MultiheadAttention:
        attn = nn.MultiheadAttention(C, HEADS, batch_first=True).double()
        attn.load_state_dict({k[len(prefix) + 1:]: v for k, v in p.items() if k.startswith(prefix + ".")})
        return attn

    def ln(x, prefix):
        return F.layer_norm(x, (C,), p[f"{prefix}.weight"], p[f"{prefix}.bias"])

    def lin(x, prefix):
        return F.linear(x, p[f"{prefix}.weight"], p[f"{prefix}.bias"])

    names, counts = queries.names, queries.counts

    def heads(x):
        x = ln(x, "decoder_norm")
        groups = dict(zip(names, x.split(counts, 1)))
        embeds = []
        for name in names:
            e = groups[name]
            for j in range(3):
                e = lin(e, f"mask_embeds.{name}.layers.{j}")
                e = F.relu(e) if j < 2 else e
            embeds.append(e)
        masks = torch.einsum("bcthw,bqc->bqthw", mask_features.double(), torch.cat(embeds, 1))
        cls = None
        if {"instance", "background", "semantic"} <= set(names):
            i = lin(groups["instance"], "proj_layers.instance")
            g = lin(groups["background"], "proj_layers.background")
            s = lin(groups["semantic"], "proj_layers.semantic")
            cls = torch.cat([torch.einsum("bic,bgc->big", i, g).max(2, keepdim=True).values,
                             torch.einsum("bic,bsc->bis", i, s)], 2)
        return masks, cls

    feats, keys, sizes = [], [], []
    for level, x in enumerate(levels):
        x = x.double()
        b, _, t, h, w = x.shape
        sizes.append((t, h, w))
        f = x.flatten(2).transpose(1, 2) + p["scale_embed.weight"][level]
        feats.append(f)
        keys.append(f + sine_3d(t, h, w).flatten(1).t())

    def attn_mask(masks, size):
        blocked = F.interpolate(masks, size=size, mode="trilinear", align_corners=False).sigmoid() < 0.5
        blocked = blocked.flatten(2)
        blocked[blocked.all(-1)] = False  # a fully blocked query attends to everything
        return blocked.repeat_interleave(HEADS, 0)  # (B * heads, Q, N)

    x, e = queries.inits.double(), queries.embeds.double()
    masks, cls = heads(x)
    out = [(masks, cls)]
    mask = attn_mask(masks, sizes[0])
    for i in range(decoder.num_layers):
        level = i % 3
        cross = mha(f"transformer_cross_attention_layers.{i}.multihead_attn._attn")
        a = cross(x + e, keys[level], feats[level], attn_mask=mask, need_weights=False)[0]
        x = ln(x + a, f"transformer_cross_attention_layers.{i}.norm")
        self_attn = mha(f"transformer_self_attention_layers.{i}.self_attn")
        a = self_attn(x + e, x + e, x, need_weights=False)[0]
        x = ln(x + a, f"transformer_self_attention_layers.{i}.norm")
        ffn = lin(F.relu(lin(x, f"transformer_ffn_layers.{i}.linear1")), f"transformer_ffn_layers.{i}.linear2")
        x = ln(x + ffn, f"transformer_ffn_layers.{i}.norm")
        masks, cls = heads(x)
        out.append((masks, cls))
        mask = attn_mask(masks, sizes[(i + 1) % 3])
    return out


def random_inputs(batch: int, frames: int, groups: list[tuple[str, int]], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(batch, C, frames, 2 * 2**i, 3 * 2**i, generator=g) for i in range(3)]
    mask_features = torch.randn(batch, C, frames, 16, 24, generator=g)
    q = sum(n for _, n in groups)
    queries = QuerySet(torch.randn(batch, q, C, generator=g), torch.randn(batch, q, C, generator=g), tuple(groups))
    return levels, mask_features, queries


@pytest.mark.parametrize("groups", [
    [("instance", 5), ("background", 1), ("semantic", 7)],  # VIS / VPS
    [("background_vos", 4), ("vos", 6)],                    # VOS
])
def test_decoder_matches_the_reference(groups) -> None:
    torch.manual_seed(0)
    decoder = MaskedAttentionDecoder(dim=C, num_heads=HEADS, ffn_dim=48, num_layers=4, backend="torch").eval()
    levels, mask_features, queries = random_inputs(2, 2, groups)
    with torch.no_grad():
        actual = decoder(levels, mask_features, queries)
        expected = reference_decoder(decoder, levels, mask_features, queries)
    assert len(actual) == 5
    # The masks of the layers must block keys for this test to mean something.
    blocked = F.interpolate(expected[0][0], size=(2, 2, 3), mode="trilinear", align_corners=False) < 0
    assert 0.2 < blocked.float().mean() < 0.8
    for (masks, cls), (ref_masks, ref_cls) in zip(actual, expected):
        torch.testing.assert_close(masks.double(), ref_masks, rtol=1e-4, atol=1e-4)
        if ref_cls is None:
            assert cls is None
        else:
            assert cls.shape == (2, 5, 1 + 7)
            torch.testing.assert_close(cls.double(), ref_cls, rtol=1e-4, atol=1e-4)


def test_final_layer_only() -> None:
    torch.manual_seed(0)
    decoder = MaskedAttentionDecoder(dim=C, num_heads=HEADS, ffn_dim=48, num_layers=2, backend="torch")
    levels, mask_features, queries = random_inputs(1, 2, [("background_vos", 2), ("vos", 3)])
    with torch.no_grad():
        every = decoder(levels, mask_features, queries)
        final = decoder(levels, mask_features, queries, all_layers=False)
    assert len(every) == 3 and len(final) == 1
    torch.testing.assert_close(final[0].mask_logits, every[-1].mask_logits, rtol=0, atol=0)


def test_unknown_query_groups_are_named() -> None:
    decoder = MaskedAttentionDecoder(dim=C, num_heads=HEADS, ffn_dim=48, num_layers=1)
    levels, mask_features, queries = random_inputs(1, 1, [("things", 3)])
    with pytest.raises(ValueError, match="unknown query groups"):
        decoder(levels, mask_features, queries)
