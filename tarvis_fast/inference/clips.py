"""Which clips of a video the network sees, and the geometry between video frames and network logits.

Clip schedule (SPEC §6): clips start at `range(first_frame, L, clip_length - overlap)` and the last one is cut
at L; each clip's first `overlap` frames are the previous clip's last ones.

Geometry (SPEC §2.1, §4, §6): a frame of size (H, W) is resized to (h, w) (`ImagesResizer`), padded right and
bottom to (Hp, Wp), multiples of 64, and the network returns logits at (Hp/4, Wp/4). Logits go back by a x4
bilinear upsample, cropping the padding and a bilinear resize to (H, W) (align_corners=False throughout).
That chain runs on whatever device the logits live on, one frame and a bounded number of channels at a time,
so a clip is never held at full resolution as a whole.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tarvis_fast.model.neck import WINDOW_PIXELS
from tarvis_fast.model.tarvis import (
    padded_size,  # the model pads; this is its rule, re-exported
)
from tarvis_fast.resize import min_dim_size, resize_frames, resize_masks

LOGIT_STRIDE = 4       # mask logits come at 1/4 of the padded input size
SUPPRESSED_LOGIT = -1e3  # the original's "minus infinity" (a true -inf misbehaves in float16)
DEFAULT_MAX_ELEMENTS = 1 << 25  # upsampled floats held at once by the chunked chain (128 MiB in float32)


# ----------------------------------------------------------------------------------------------- clip schedule

@dataclass(frozen=True)
class Clip:
    """One clip of the schedule: video frames `start .. stop-1`, the first `num_overlap` of which the previous
    clip also covered (0 for the first clip)."""

    index: int
    start: int
    stop: int
    num_overlap: int

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def clip_schedule(num_frames: int, clip_length: int, overlap: int, first_frame: int = 0) -> list[Clip]:
    """The clips covering frames `first_frame .. num_frames-1` (SPEC §6).

    Clips start every `clip_length - overlap` frames; the first clip that reaches the last frame is cut there and
    ends the schedule. Every frame must lie in at most two clips (`2 * overlap <= clip_length`): stitching
    decides each overlap between exactly two clips, as the original does (it fails an assertion otherwise).
    """
    for name, value in (("num_frames", num_frames), ("clip_length", clip_length)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < clip_length:
        raise ValueError(f"overlap must be an int in [0, clip_length={clip_length}), got {overlap!r}")
    if 2 * overlap > clip_length:
        raise ValueError(f"overlap={overlap} is more than half of clip_length={clip_length}: a frame would lie in "
                         "three clips, which stitching does not support")
    if not isinstance(first_frame, int) or not 0 <= first_frame < num_frames:
        raise ValueError(f"first_frame must be an int in [0, num_frames={num_frames}), got {first_frame!r}")

    clips: list[Clip] = []
    for start in range(first_frame, num_frames, clip_length - overlap):
        stop = min(start + clip_length, num_frames)
        clips.append(Clip(index=len(clips), start=start, stop=stop, num_overlap=overlap if clips else 0))
        if stop == num_frames:
            break
    return clips


# ----------------------------------------------------------------------------------------------- resizing

@dataclass(frozen=True)
class FrameGeometry:
    """Sizes (height, width) of one video's frames along the inference path.

    original: the video's frames; resized: fed to the network before padding; padded: fed to the network.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("original", "resized", "padded"):
            size = getattr(self, name)
            if len(size) != 2 or any(not isinstance(s, numbers.Integral) or s < 1 for s in size):
                raise ValueError(f"FrameGeometry.{name} must be two positive ints (height, width), got {size!r}")
            object.__setattr__(self, name, (int(size[0]), int(size[1])))  # frozen: normalise once, here
        if any(p < r or p % WINDOW_PIXELS for p, r in zip(self.padded, self.resized)):
            raise ValueError(f"FrameGeometry.padded={self.padded} must be multiples of {WINDOW_PIXELS} no smaller "
                             f"than resized={self.resized}")

    @classmethod
    def for_resized(cls, original: tuple[int, int], resized: tuple[int, int]) -> FrameGeometry:
        return cls(original=original, resized=resized, padded=padded_size(*resized))

    @property
    def logits_size(self) -> tuple[int, int]:
        """(Hp/4, Wp/4): the spatial size of the network's mask logits."""
        return self.padded[0] // LOGIT_STRIDE, self.padded[1] // LOGIT_STRIDE

    @property
    def padding(self) -> tuple[int, int]:
        """(bottom, right) rows and columns of padding."""
        return self.padded[0] - self.resized[0], self.padded[1] - self.resized[1]

    # -- frames and reference masks into the network ------------------------------------------------------

    def resize_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8 (`tarvis_fast.resize.resize_frames`)."""
        if frames.ndim != 4 or tuple(frames.shape[1:3]) != self.original:
            raise ValueError(f"frames must be (T, {self.original[0]}, {self.original[1]}, C), got {frames.shape}")
        return resize_frames(frames, self.resized)

    def resize_masks(self, masks: np.ndarray) -> np.ndarray:
        """(N, H, W) binary -> (N, h, w) bool (`tarvis_fast.resize.resize_masks`)."""
        if masks.ndim != 3 or tuple(masks.shape[1:]) != self.original:
            raise ValueError(f"masks must be (N, {self.original[0]}, {self.original[1]}), got {masks.shape}")
        return resize_masks(masks, self.resized)

    def pad(self, x: Tensor, value: float) -> Tensor:
        """(..., h, w) -> (..., Hp, Wp), padded right and bottom with `value` (128 for images, 0 for masks)."""
        if tuple(x.shape[-2:]) != self.resized:
            raise ValueError(f"expected (..., {self.resized[0]}, {self.resized[1]}), got {tuple(x.shape)}")
        bottom, right = self.padding
        if bottom == right == 0:
            return x
        return F.pad(x, (0, right, 0, bottom), value=value)

    # -- logits back out --------------------------------------------------------------------------------------

    def _check_logits(self, logits: Tensor) -> None:
        if logits.ndim < 2 or tuple(logits.shape[-2:]) != self.logits_size:
            raise ValueError(f"logits must end in the logit size {self.logits_size} (padded {self.padded} / 4), "
                             f"got {tuple(logits.shape)}")

    def logits_to_padded(self, logits: Tensor) -> Tensor:
        """(..., Hp/4, Wp/4) -> (..., Hp, Wp) float32: the x4 bilinear upsample alone (VOS propagation)."""
        self._check_logits(logits)
        lead = logits.shape[:-2]
        x = logits.reshape(1, -1, *self.logits_size).float()
        x = F.interpolate(x, scale_factor=float(LOGIT_STRIDE), mode="bilinear", align_corners=False)
        return x.reshape(*lead, *self.padded)

    def logits_to_original(self, logits: Tensor) -> Tensor:
        """(..., Hp/4, Wp/4) -> (..., H, W) float32: x4 upsample, crop the padding, resize to the frame size."""
        x = self.logits_to_padded(logits)
        lead = x.shape[:-2]
        x = x[..., : self.resized[0], : self.resized[1]]
        if self.resized != self.original:
            x = F.interpolate(x.reshape(1, -1, *self.resized), size=self.original, mode="bilinear",
                              align_corners=False)
        return x.reshape(*lead, *self.original)

    def channels_per_chunk(self, max_elements: int) -> int:
        """How many (frame, channel) maps the chain may bring to full size at once within `max_elements`."""
        largest = max(self.padded[0] * self.padded[1], self.original[0] * self.original[1])
        return max(1, max_elements // largest)


class ImagesResizer:
    """The inference resize of the original (`ImagesResizer`): "min_dim" (shorter side := min_dim, longer side
    capped at max_dim) or "none". Deterministic: one min_dim, as inference uses."""

    def __init__(self, mode: Literal["min_dim", "none"], min_dim: int | None = None, max_dim: int | None = None):
        if mode == "min_dim":
            if not isinstance(min_dim, int) or not isinstance(max_dim, int) or not 0 < min_dim <= max_dim:
                raise ValueError(f"resize mode 'min_dim' needs ints 0 < min_dim <= max_dim, got min_dim={min_dim!r}, "
                                 f"max_dim={max_dim!r}")
        elif mode == "none":
            if min_dim is not None or max_dim is not None:
                raise ValueError("resize mode 'none' takes no min_dim/max_dim")
        else:
            raise ValueError(f"resize mode must be 'min_dim' or 'none', got {mode!r}")
        self.mode, self.min_dim, self.max_dim = mode, min_dim, max_dim

    def __repr__(self) -> str:
        return f"ImagesResizer(mode={self.mode!r}, min_dim={self.min_dim}, max_dim={self.max_dim})"

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.mode == "none":
            return height, width
        return min_dim_size(height, width, self.min_dim, self.max_dim)

    def geometry(self, height: int, width: int) -> FrameGeometry:
        """The geometry of a video whose frames are (height, width)."""
        return FrameGeometry.for_resized((height, width), self.resized_size(height, width))


# ----------------------------------------------------------------------------------------------- chunked chain

def _check_clip_logits(logits: Tensor, geometry: FrameGeometry) -> None:
    if logits.ndim != 4:
        raise ValueError(f"clip logits must be (N, T, h, w), got {tuple(logits.shape)}")
    geometry._check_logits(logits)


def masks_at_original(logits: Tensor, geometry: FrameGeometry, max_elements: int = DEFAULT_MAX_ELEMENTS,
                      ) -> Iterator[tuple[int, slice, Tensor]]:
    """Binarised (> 0) masks at the video's resolution, a frame and a chunk of channels at a time.

    logits: (N, T, Hp/4, Wp/4). Yields (t, channels, masks) with t the frame within the clip, `channels` a slice
    of N and masks (n, H, W) bool on the logits' device, frame by frame in order.
    """
    _check_clip_logits(logits, geometry)
    n_chunk = geometry.channels_per_chunk(max_elements)
    num_channels, num_frames = logits.shape[:2]
    for t in range(num_frames):
        for c0 in range(0, num_channels, n_chunk):
            channels = slice(c0, min(c0 + n_chunk, num_channels))
            yield t, channels, geometry.logits_to_original(logits[channels, t]) > 0


def argmax_at_original(logits: Tensor, geometry: FrameGeometry, max_elements: int = DEFAULT_MAX_ELEMENTS,
                       ) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Per-pixel max and argmax over channels at the video's resolution, frame by frame.

    logits: (N, T, Hp/4, Wp/4) with N >= 1. Yields (t, max (H, W) float32, argmax (H, W) int64). Channels are
    brought to full size in chunks and reduced with a running maximum; ties go to the lower channel.
    """
    _check_clip_logits(logits, geometry)
    num_channels, num_frames = logits.shape[:2]
    if num_channels == 0:
        raise ValueError("argmax over zero channels")
    n_chunk = geometry.channels_per_chunk(max_elements)
    for t in range(num_frames):
        best = best_index = None
        for c0 in range(0, num_channels, n_chunk):
            values, index = geometry.logits_to_original(logits[c0:c0 + n_chunk, t]).max(0)
            index += c0
            if best is None:
                best, best_index = values, index
            else:
                better = values > best
                best = torch.where(better, values, best)
                best_index = torch.where(better, index, best_index)
        yield t, best, best_index


# ----------------------------------------------------------------------------------------------- checks shared by the accumulators

def check_num_frames(num_frames: int) -> None:
    if not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")


def check_clip(clip: Clip, num_frames: int, length: int, what: str) -> None:
    if clip.stop > num_frames:
        raise ValueError(f"clip {clip.index} ends at frame {clip.stop - 1}, past the video's last frame "
                         f"{num_frames - 1}")
    if length != len(clip):
        raise ValueError(f"{what} has {length} frames but clip {clip.index} has {len(clip)} "
                         f"(frames {clip.start}..{clip.stop - 1})")


def check_follows(clip: Clip, previous_stop: int | None) -> None:
    """Clips must arrive in schedule order: each overlaps exactly the frames the previous one left open."""
    if previous_stop is None:
        if clip.num_overlap:
            raise ValueError(f"clip {clip.index} overlaps a previous clip that was never added")
    elif clip.start + clip.num_overlap != previous_stop:
        raise ValueError(f"clip {clip.index} (frames {clip.start}..{clip.stop - 1}, {clip.num_overlap} overlapping) "
                         f"does not follow the previous clip, which ended at frame {previous_stop - 1}: add clips "
                         "in schedule order")


def check_logits_size(what: str, shape: Sequence[int], geometry: FrameGeometry) -> None:
    if tuple(shape[-2:]) != geometry.logits_size:
        raise ValueError(f"{what} is {tuple(shape)}, but this video's logits are {geometry.logits_size} "
                         f"(padded input {geometry.padded} / 4)")


@dataclass
class HeldClip:
    """What an accumulator keeps of the latest clip between calls."""

    logits: Tensor          # (N, T', h, w) float32: the latest clip's logits on its frames that are not final yet
    frames: range           # the T' video frames of `logits`
    ids: list[int]          # track or object id of each of the N rows
