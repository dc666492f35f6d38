"""PointRend point sampling: coordinates, importance sampling and point sources."""
from __future__ import annotations

import pytest
import torch

from tarvis_fast.training.point_sampling import (
    RandomPoints,
    ReplayPoints,
    candidate_shape,
    draw_uncertain_points,
    most_uncertain_points,
    multiclass_uncertainty,
    point_sample,
)


def test_pixel_centres_read_pixels_and_full_res_matches_quarter_res() -> None:
    values = torch.arange(12.0, dtype=torch.float64).reshape(1, 1, 3, 4)
    centres = torch.tensor([[[(1 + 0.5) / 4, (2 + 0.5) / 3], [0.5 / 4, 0.5 / 3]]], dtype=torch.float64)  # (x, y)
    torch.testing.assert_close(point_sample(values, centres), torch.tensor([[[9.0, 0.0]]], dtype=torch.float64))
    # A constant 4x4 block at full resolution reads as its 1/4-resolution pixel at the same point.
    coarse = torch.rand(1, 1, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fine = coarse.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(point_sample(fine, centres), point_sample(coarse, centres))


def test_grid_of_points_per_row() -> None:
    values = torch.rand(2, 3, 5, 5)
    points = torch.rand(2, 4, 7, 2)
    out = point_sample(values, points)
    assert out.shape == (2, 3, 4, 7)
    torch.testing.assert_close(out[:, :, 1], point_sample(values, points[:, 1]))


def test_most_uncertain_points_then_uniform() -> None:
    candidates = torch.rand(2, 12, 2)
    uncertainty = torch.arange(24.0).reshape(2, 12)
    uniform = torch.rand(2, 1, 2)
    points = most_uncertain_points(candidates, uncertainty, uniform, num_points=4)
    assert candidate_shape(4) == (12, 1)
    assert torch.equal(points[:, :3], candidates[:, [11, 10, 9]]) and torch.equal(points[:, 3:], uniform)


def test_multiclass_uncertainty_is_second_minus_first() -> None:
    logits = torch.tensor([[[1.0], [4.0], [3.0]]])
    assert multiclass_uncertainty(logits).tolist() == [[-1.0]]


def test_sources() -> None:
    drawn = RandomPoints(torch.Generator().manual_seed(0))("x", (2, 3, 2), torch.float64, torch.device("cpu"))
    assert drawn.dtype == torch.float64 and 0 <= drawn.min() and drawn.max() < 1
    source = ReplayPoints({"a.candidates": torch.zeros(1, 2, 6, 2), "a.uniform": torch.ones(1, 2, 1, 2)})
    candidates, uniform = draw_uncertain_points(source, "a", (1, 2), 2, torch.float32, torch.device("cpu"))
    assert candidates.shape == (1, 2, 6, 2) and uniform.dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        draw_uncertain_points(source, "a", (1, 3), 2, torch.float32, torch.device("cpu"))
    with pytest.raises(KeyError, match="no replayed points"):
        source("b", (1,), torch.float32, torch.device("cpu"))
