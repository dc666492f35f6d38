"""The original's resize rules, shared by training augmentation and inference.

    min_dim_size(720, 1280, 448, 1333)      # (448, 796): shorter side 448, longer side capped at 1333
    resize_frames(frames, (448, 796))       # cv2 INTER_LINEAR per frame
    resize_masks(masks, (448, 796))         # INTER_LINEAR on float32, then > 0.5
"""
from __future__ import annotations

import cv2
import numpy as np


def min_dim_size(height: int, width: int, min_dim: int, max_dim: int) -> tuple[int, int]:
    """The original's "min_dim" resize: shorter side := min_dim unless the longer side would exceed max_dim,
    then longer side := max_dim. Rounding is Python's `round()` (half to even), as in the original."""
    lower, higher = float(min(height, width)), float(max(height, width))
    scale = min_dim / lower
    if higher * scale > max_dim:
        scale = max_dim / higher
    return round(scale * height), round(scale * width)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, C) uint8 -> (T, h, w, C) uint8 with (h, w) = `size`: cv2 INTER_LINEAR per frame, as the
    original's loaders. Returns `frames` itself when the size does not change."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C), got {frames.shape}")
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) binary -> (N, h, w) bool with (h, w) = `size`: INTER_LINEAR on float32, then > 0.5 (the
    original's mask resize, which drops masks thinner than about half the scale step)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {masks.shape}")
    if tuple(masks.shape[1:]) == tuple(size):
        return masks.astype(bool)
    h, w = size
    resized = [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5 for m in masks]
    return np.stack(resized) if resized else np.zeros((0, h, w), bool)
