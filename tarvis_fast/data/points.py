"""PET points from object masks: training turns a mask object into a point object with these (SPEC §2.5),
in the convention of the model's `ObjectReferences.points`: normalised (y, x) pixel centres.

Inference never does (its points come from the benchmark or the user), so this is data-side code.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import Tensor


def mask_to_point(mask: Tensor) -> tuple[int, int]:
    """The interior-most pixel (row, col) of a 2D mask: the maximum of its Euclidean distance transform, ties
    broken by the smallest |dy| + |dx| to the mask's centroid (then by row-major order).

    Training turns a mask into a PET point with it: ((row + 0.5) / H, (col + 0.5) / W).
    """
    array = mask.detach().bool().cpu().numpy()
    if array.ndim != 2 or not array.any():
        raise ValueError(f"mask_to_point needs a non-empty 2D mask, got shape {array.shape}")
    # the transform of the mask's box grown by one background pixel (not beyond the image, whose outside is no
    # background for the transform) equals the whole image's inside the mask: the nearest background pixel of a
    # mask pixel is on or inside that ring
    y_any, x_any = np.flatnonzero(array.any(1)), np.flatnonzero(array.any(0))
    y0, x0 = max(int(y_any[0]) - 1, 0), max(int(x_any[0]) - 1, 0)
    array = array[y0:int(y_any[-1]) + 2, x0:int(x_any[-1]) + 2]
    distance = distance_transform_edt(array)
    rows, cols = np.nonzero(distance == distance.max())
    if len(rows) == 1:
        return int(rows[0]) + y0, int(cols[0]) + x0
    mask_rows, mask_cols = np.nonzero(array)
    score = np.abs(rows - mask_rows.astype(np.float32).mean()) + np.abs(cols - mask_cols.astype(np.float32).mean())
    best = int(np.argmin(score))
    return int(rows[best]) + y0, int(cols[best]) + x0


def points_from_masks(masks: Tensor) -> Tensor:
    """(B, N, H, W) bool masks -> (B, N, 2) normalised (y, x) of each mask's interior-most pixel centre."""
    b, n, h, w = masks.shape
    pixels = [mask_to_point(m) for m in masks.reshape(b * n, h, w)]
    coords = torch.tensor(pixels, dtype=torch.float32).view(b, n, 2) + 0.5
    return (coords / torch.tensor([h, w], dtype=torch.float32)).to(masks.device)
