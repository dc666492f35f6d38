"""PET points from masks against hand-derived answers."""
from __future__ import annotations

import pytest
import torch

from tarvis_fast.data.points import mask_to_point, points_from_masks


def test_mask_to_point_picks_the_interior_most_pixel() -> None:
    square = torch.zeros(10, 10, dtype=torch.bool)
    square[2:7, 3:8] = True
    assert mask_to_point(square) == (4, 5)
    # A 2x4 bar in the corner: distance 2 at (0, 0), (0, 1), (0, 2); the centroid (0.5, 1.5) is nearest
    # (|dy| + |dx| = 1) to (0, 1) and (0, 2), and the first of those wins.
    bar = torch.zeros(4, 6, dtype=torch.bool)
    bar[0:2, 0:4] = True
    assert mask_to_point(bar) == (0, 1)
    points = points_from_masks(torch.stack([square, square.roll(1, 0)])[None])
    torch.testing.assert_close(points, torch.tensor([[[4.5 / 10, 5.5 / 10], [5.5 / 10, 5.5 / 10]]]))
    with pytest.raises(ValueError, match="non-empty 2D mask"):
        mask_to_point(torch.zeros(3, 3, dtype=torch.bool))
