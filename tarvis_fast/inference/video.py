"""The user's own videos: frames in from a video file, a folder of images, arrays or an iterator; overlay
videos out.

Frames are streamed: nothing here holds the whole video in memory.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tarvis_fast.formats.davis import DAVIS_PALETTE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

FrameInput = str | os.PathLike | Sequence[np.ndarray] | Iterable[np.ndarray]


@dataclass
class FrameStream:
    """Frames (H, W, 3) uint8 RGB, in order, with what is known about them up front.

    names: one per frame (file stems for a folder, zero-padded indices otherwise); None when the number of
    frames is unknown (a plain iterator).
    """

    frames: Iterator[np.ndarray]
    num_frames: int | None
    fps: float | None
    names: list[str] | None
    source: str


def _check_frame(frame: np.ndarray, index: int, source: str, size: tuple[int, int] | None) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ValueError(f"{source}: frame {index} must be an (H, W, 3) RGB array, got {shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{source}: frame {index} must be uint8 (0-255), got {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"{source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                         f"but earlier frames are {size[1]}x{size[0]}")
    return frame


def _checked(frames: Iterable[np.ndarray], source: str) -> Iterator[np.ndarray]:
    size = None
    for index, frame in enumerate(frames):
        yield _check_frame(frame, index, source, size)
        size = frame.shape[:2]


def read_image_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises naming the file if it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _folder_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths:
        yield read_image_rgb(path)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_frames(source: FrameInput) -> FrameStream:
    """A stream of RGB frames from a video file, a folder of images (sorted by name), a sequence of arrays,
    or any iterable of arrays."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"video or frame folder not found: {path}")
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ValueError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return FrameStream(_checked(_folder_frames(images), str(path)), len(images), None,
                               [p.stem for p in images], str(path))
        capture = cv2.VideoCapture(str(path))
        opened = capture.isOpened()
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if opened else 0.0
        capture.release()
        if not opened:
            raise ValueError(f"{path}: cannot open as a video (or give a folder of frames)")
        # CAP_PROP_FRAME_COUNT is an estimate for some containers: count what is actually decoded.
        return FrameStream(_checked(_video_frames(path), str(path)), None, fps or None, None, str(path))
    if isinstance(source, Sequence):
        names = [f"{i:05d}" for i in range(len(source))]
        return FrameStream(_checked(iter(source), "frames"), len(source), None, names, "frames")
    return FrameStream(_checked(iter(source), "frames"), None, None, None, "frames")


def id_colours(ids: np.ndarray | int) -> np.ndarray:
    """(..., 3) uint8 RGB colour of each integer id: the DAVIS palette of the result PNGs (`formats.davis`), id 0
    black; ids past 255 cycle through its 255 object colours."""
    ids = np.asarray(ids)
    return DAVIS_PALETTE[np.where(ids > 0, (ids - 1) % 255 + 1, 0)]


def draw_overlay(frame: np.ndarray, ids: np.ndarray, labels: Mapping[int, str], alpha: float = 0.5) -> np.ndarray:
    """Blend per-id colours over an RGB frame, outline each id, and draw a legend of ids and names.

    frame (H, W, 3) uint8 RGB; ids (H, W) integer map, 0 = nothing; labels: id -> text for the legend.
    """
    if ids.shape != frame.shape[:2]:
        raise ValueError(f"id map {ids.shape} does not match frame {frame.shape[:2]}")
    present = [int(i) for i in np.unique(ids) if i != 0]
    out = frame.copy()
    fg = ids > 0
    out[fg] = (alpha * id_colours(ids[fg]) + (1 - alpha) * frame[fg]).astype(np.uint8)
    for obj in present:
        contours, _ = cv2.findContours((ids == obj).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in id_colours(obj)), 2)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    for row, obj in enumerate(sorted(labels)):
        y = 18 + 20 * row
        cv2.rectangle(out, (6, y - 12), (20, y + 2), tuple(int(c) for c in id_colours(obj)), -1)
        text = f"{obj}: {labels[obj]}"
        cv2.putText(out, text, (26, y), font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, (26, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


class OverlayVideoWriter:
    """Writes overlay frames to an .mp4 (or .avi) file; the file appears complete or not at all.

    Use as a context manager; frames are (H, W, 3) uint8 RGB of one size.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0) -> None:
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=self.path.suffix)
            os.close(fd)
            self._tmp = Path(tmp)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise RuntimeError(f"cannot write video {self.path} (codec unavailable?)")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        assert self._tmp is not None
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)
