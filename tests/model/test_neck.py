"""The temporal neck's parts against hand-derived layouts and float64 references written from SPEC §2.3 and §3."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tarvis_fast.model.neck import (
    MSDeformAttn,
    TemporalNeck,
    WindowAttentionLayer,
    from_windows,
    to_windows,
    window_orders,
    window_token_index,
)

LEVELS = [(2, 4), (4, 8), (8, 16)]  # a 64x128 image: 1/32, 1/16, 1/8 maps; 1 x 2 windows of 64x64 pixels


def windows_by_hand(level_shapes: list[tuple[int, int]]) -> list[list[int]]:
    """Per 64x64-pixel window (row-major), the flat per-frame token indices it covers: at level l the cells
    of a 2^(l+1)-wide square, level 0 first, each level row-major (SPEC §2.3)."""
    rows, cols = level_shapes[0][0] // 2, level_shapes[0][1] // 2
    windows = []
    for r in range(rows):
        for c in range(cols):
            tokens, offset = [], 0
            for level, (h, w) in enumerate(level_shapes):
                k = 2 ** (level + 1)
                tokens += [offset + y * w + x for y in range(r * k, r * k + k) for x in range(c * k, c * k + k)]
                offset += h * w
            windows.append(tokens)
    return windows


def test_window_token_index_covers_the_same_64_pixels_at_every_level() -> None:
    index = window_token_index(LEVELS)
    assert index.shape == (2, 4 + 16 + 64)
    assert index.tolist() == windows_by_hand(LEVELS)
    assert index[0, :4].tolist() == [0, 1, 4, 5]  # the 1/32 map's 2x2 cells of the left window


def test_window_token_index_needs_even_coarse_sides() -> None:
    with pytest.raises(ValueError, match="even sides"):
        window_token_index([(3, 4), (6, 8), (12, 16)])
    with pytest.raises(ValueError, match="twice the size"):
        window_token_index([(2, 4), (4, 8), (8, 15)])


def test_windows_round_trip_with_frames_fastest() -> None:
    index = window_token_index(LEVELS)
    order, inverse = window_orders(index, 3)
    x = torch.randn(2, 3, index.numel(), 5)  # (B, T, S, C)
    windows = to_windows(x, order)
    assert windows.shape == (2 * 2, 84 * 3, 5)
    # window 1 of batch element 1: token n of the window at frame t sits at n * T + t
    torch.testing.assert_close(windows[3].view(84, 3, 5), x[1][:, index[1]].transpose(0, 1))
    torch.testing.assert_close(from_windows(windows, inverse), x)


def reference_window_layer(layer: WindowAttentionLayer, x: torch.Tensor, pos: torch.Tensor,
                           level_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """Float64: within each window, all its tokens of all frames attend to each other (q = k = x + pos,
    v = x), with torch's own nn.MultiheadAttention; then residual, norm1, FFN, norm2 per token."""
    c = x.shape[-1]
    attn = nn.MultiheadAttention(c, layer.self_attn.num_heads, batch_first=True).double()
    attn.load_state_dict({k: v.double() for k, v in layer.self_attn.state_dict().items()})
    b, t, _, _ = x.shape
    out = torch.empty_like(x)
    for tokens in windows_by_hand(level_shapes):
        for i in range(b):
            src = x[i][:, tokens].reshape(-1, c)  # (T * K, C), any token order
            qk = src + pos[i][:, tokens].reshape(-1, c)
            y = src + attn(qk[None], qk[None], src[None], need_weights=False)[0][0]
            y = F.layer_norm(y, (c,), layer.norm1.weight.double(), layer.norm1.bias.double())
            ffn = F.linear(F.relu(F.linear(y, layer.linear1.weight.double(), layer.linear1.bias.double())),
                           layer.linear2.weight.double(), layer.linear2.bias.double())
            y = F.layer_norm(y + ffn, (c,), layer.norm2.weight.double(), layer.norm2.bias.double())
            out[i][:, tokens] = y.view(t, len(tokens), c)
    return out


@pytest.mark.parametrize("frames, training", [(2, True), (6, False)])  # 6 frames: 504 tokens, chunked in eval
def test_window_attention_layer_matches_per_window_attention(frames: int, training: bool) -> None:
    torch.manual_seed(0)
    level_shapes = [(2, 2), (4, 4), (8, 8)] if frames == 6 else LEVELS
    layer = WindowAttentionLayer(dim=32, num_heads=4, ffn_dim=48, backend="torch").train(training)
    index = window_token_index(level_shapes)
    order, inverse = window_orders(index, frames)
    x = torch.randn(2, frames, index.numel(), 32)
    pos = torch.randn(1, frames, index.numel(), 32).expand(2, -1, -1, -1)
    with torch.no_grad():
        actual = from_windows(layer(to_windows(x, order), to_windows(pos, order)), inverse)
        expected = reference_window_layer(layer, x.double(), pos.double(), level_shapes)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_deformable_offsets_start_on_a_star() -> None:
    # SPEC §3: head h looks along 2πh/M, direction scaled so its larger |component| is 1, point p at p + 1.
    attn = MSDeformAttn(dim=32, num_levels=3, num_heads=8, num_points=4)
    bias = attn.sampling_offsets.bias.view(8, 3, 4, 2)
    directions = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
    for head, direction in enumerate(directions):
        for point in range(4):
            expected = torch.tensor(direction, dtype=torch.float32).expand(3, 2) * (point + 1)
            torch.testing.assert_close(bias[head, :, point], expected, rtol=0, atol=1e-5)
    assert not attn.sampling_offsets.weight.any() and not attn.attention_weights.weight.any()
    assert not attn.attention_weights.bias.any()


def test_deformable_attention_matches_the_formula() -> None:
    """Float64 reference of SPEC §3: location = reference + offset / (W_l, H_l), one grid_sample per head
    and level, weights softmax-ed over levels and points jointly."""
    torch.manual_seed(0)
    attn = MSDeformAttn(dim=16, num_levels=2, num_heads=2, num_points=3, backend="torch")
    for param in attn.parameters():
        nn.init.normal_(param, std=0.3)
    shapes = [(3, 5), (6, 10)]
    n, lq, s = 2, 7, 15 + 60
    query, value = torch.randn(n, lq, 16), torch.randn(n, s, 16)
    reference_points = torch.rand(lq, 2)
    spatial_shapes = torch.tensor(shapes)
    level_start_index = torch.tensor([0, 15])
    actual = attn(query, reference_points, value, spatial_shapes, level_start_index)

    p = {k: v.double() for k, v in attn.state_dict().items()}
    q, v = query.double(), value.double()
    proj = F.linear(v, p["value_proj.weight"], p["value_proj.bias"]).view(n, s, 2, 8)
    offsets = F.linear(q, p["sampling_offsets.weight"], p["sampling_offsets.bias"]).view(n, lq, 2, 2, 3, 2)
    logits = F.linear(q, p["attention_weights.weight"], p["attention_weights.bias"]).view(n, lq, 2, 6)
    weights = logits.softmax(-1).view(n, lq, 2, 2, 3)
    out = torch.zeros(n, lq, 2, 8, dtype=torch.float64)
    start = 0
    for level, (h, w) in enumerate(shapes):
        maps = proj[:, start:start + h * w].view(n, h, w, 2, 8).permute(0, 3, 4, 1, 2)  # (N, M, D, h, w)
        start += h * w
        for head in range(2):
            loc = reference_points.double()[None, :, None, :] + offsets[:, :, head, level] / torch.tensor(
                [w, h], dtype=torch.float64)
            samples = F.grid_sample(maps[:, head], 2 * loc - 1, mode="bilinear", padding_mode="zeros",
                                    align_corners=False)  # (N, D, Lq, P)
            out[:, :, head] += (samples * weights[:, None, :, head, level]).sum(-1).transpose(1, 2)
    expected = F.linear(out.view(n, lq, 16), p["output_proj.weight"], p["output_proj.bias"])
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_neck_outputs_the_three_levels_and_mask_features_per_clip() -> None:
    torch.manual_seed(0)
    neck = TemporalNeck({"res2": 8, "res3": 12, "res4": 16, "res5": 20}, dim=32, num_heads=4, ffn_dim=48,
                        num_layers=1, backend="torch")
    b, t, h, w = 2, 3, 64, 128
    features = {name: torch.randn(b * t, c, h // s, w // s)
                for name, c, s in [("res2", 8, 4), ("res3", 12, 8), ("res4", 16, 16), ("res5", 20, 32)]}
    out = neck(features, batch=b)
    assert [tuple(x.shape) for x in out] == [(b, 32, t, 2, 4), (b, 32, t, 4, 8), (b, 32, t, 8, 16),
                                             (b, 32, t, 16, 32)]
    # The clips are independent: batch element 1 alone gives its own outputs.
    alone = neck({k: v[t:] for k, v in features.items()}, batch=1)
    for x, y in zip(out, alone):
        torch.testing.assert_close(x[1:], y, rtol=1e-5, atol=1e-5)
    # The frames of a clip are not: window attention mixes them.
    first = neck({k: v[:1] for k, v in features.items()}, batch=1)
    assert not torch.allclose(first[0][0, :, 0], out[0][0, :, 0], atol=1e-3)
    assert math.isfinite(sum(x.sum().item() for x in out))
