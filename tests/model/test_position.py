"""Sine position embeddings against the formula of SPEC §2.3, evaluated element by element in float64."""
from __future__ import annotations

import math

import pytest
import torch

from tarvis_fast.model.position import sine_embedding_2d, sine_embedding_3d


def feature(coord: float, k: int, num_feats: int) -> float:
    """Feature k of a coordinate: sin for even k, cos for odd k, of coord / 10000^(2·floor(k/2)/num_feats)."""
    angle = coord / 10000 ** (2 * (k // 2) / num_feats)
    return math.sin(angle) if k % 2 == 0 else math.cos(angle)


def coordinate(index: int, size: int, normalize: bool) -> float:
    """1-based position, or normalised (i + 1) / (size + 1e-6) · 2π."""
    return (index + 1) / (size + 1e-6) * 2 * math.pi if normalize else float(index + 1)


def reference_2d(height: int, width: int, num_feats: int, normalize: bool) -> torch.Tensor:
    out = torch.empty(2 * num_feats, height, width, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            for k in range(num_feats):
                out[k, y, x] = feature(coordinate(y, height, normalize), k, num_feats)
                out[num_feats + k, y, x] = feature(coordinate(x, width, normalize), k, num_feats)
    return out


@pytest.mark.parametrize("normalize", [True, False])
def test_2d_embedding_matches_the_formula(normalize: bool) -> None:
    actual = sine_embedding_2d(5, 7, num_feats=16, normalize=normalize)
    assert actual.shape == (32, 5, 7) and actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), reference_2d(5, 7, 16, normalize), rtol=0, atol=2e-6)


def test_3d_embedding_adds_time_features_over_twice_the_channels() -> None:
    frames, height, width, num_feats = 3, 4, 6, 8
    actual = sine_embedding_3d(frames, height, width, num_feats=num_feats)
    spatial = reference_2d(height, width, num_feats, normalize=True)
    expected = torch.empty(2 * num_feats, frames, height, width, dtype=torch.float64)
    for t in range(frames):
        z = [feature(coordinate(t, frames, True), k, 2 * num_feats) for k in range(2 * num_feats)]
        expected[:, t] = spatial + torch.tensor(z, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(actual.double(), expected, rtol=0, atol=2e-6)


def test_a_single_frame_sits_at_two_pi() -> None:
    # z = 1 / (1 + 1e-6) · 2π: its time features are sin(2π) ≈ 0 and cos(2π) ≈ 1 at the first wavelength.
    pos = sine_embedding_3d(1, 1, 1, num_feats=4) - sine_embedding_2d(1, 1, num_feats=4, normalize=True)[:, None]
    assert abs(pos[0].item()) < 1e-5 and abs(pos[1].item() - 1) < 1e-5
