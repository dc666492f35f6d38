"""A small synthetic video for tests of the command lines and the predictor: noise with a red square moving
right, and a first-frame id map of two objects (the square is object 1)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH, NUM_FRAMES = 48, 64, 6
VOID = 255


def moving_square_frames(count: int = NUM_FRAMES) -> list[np.ndarray]:
    """`count` (HEIGHT, WIDTH, 3) uint8 RGB frames; the same ones on every call."""
    rng = np.random.default_rng(0)
    frames = []
    for t in range(count):
        frame = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[10:26, 8 + 4 * t:24 + 4 * t] = (220, 40, 40)
        frames.append(frame)
    return frames


def first_frame_ids(void: bool = False) -> np.ndarray:
    """(HEIGHT, WIDTH) uint8 ids on frame 0: 1 the square, 2 a box below it; with `void`, bands of 255 too (as DAVIS
    marks the pixels its annotators left open)."""
    ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    ids[10:26, 8:24] = 1
    ids[32:44, 40:56] = 2
    if void:
        ids[0:8, :] = VOID
        ids[26:30, 8:24] = VOID
    return ids


def write_jpeg_folder(folder: Path, count: int = NUM_FRAMES) -> Path:
    """The frames as folder/00000.jpg ...; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(moving_square_frames(count)):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame[..., ::-1])
    return folder
