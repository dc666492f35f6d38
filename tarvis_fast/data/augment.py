"""Clip augmentation with OpenCV and numpy (SPEC §5.2): colour jitter, flips, mask-aware crops, label-map resizing.

The original used imgaug, which is unmaintained; `ColourJitter` reproduces its three colour augmenters
(`AddToHueAndSaturation`, `LinearContrast`, `AddToBrightness`) with lookup tables. Every random choice comes from the
`np.random.Generator` passed in, so a sample is a function of its generator's seed alone.

Shapes: frames (T, H, W, 3) uint8; masks (N, T, H, W) bool; labels (T, H, W) int64 with IGNORE for void.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tarvis_fast.resize import resize_masks

IGNORE = -1  # the label of pixels the semantic loss must not look at

_CONTRAST_CENTRE = 127.5  # imgaug's LinearContrast pivots around the middle of the uint8 range
# imgaug's AddToBrightness adds to the brightness channel of one colour space chosen at random.
_BRIGHTNESS_SPACES = ((cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB, 0), (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, 2),
                      (cv2.COLOR_RGB2HLS, cv2.COLOR_HLS2RGB, 1), (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB, 0))


@dataclass(frozen=True)
class ColourJitter:
    """Ranges of the original's colour augmentation: hue and saturation shifts in ±`hue_saturation` (imgaug units,
    hue on a 0..255 circle), contrast factor in `contrast`, brightness shift in ±`brightness`."""

    hue_saturation: int
    brightness: int
    contrast: tuple[float, float] = (0.95, 1.05)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One draw of the augmentation applied to every frame alike (T, H, W, 3) uint8 -> same.

        The conversions assume RGB, as imgaug's defaults do; the original fed them BGR frames (SPEC §12 quirk 11),
        and so do the video datasets here."""
        return self.draw(rng)(frames)

    def draw(self, rng: np.random.Generator) -> Jitter:
        """The random choices of one draw, to apply later: it is pixel-wise, so the training clips apply it to the
        final (cropped, resized) frames, where it costs least; it commutes with flips and crops exactly and with
        resizing up to interpolation rounding at colour edges."""
        hue = int(rng.integers(-self.hue_saturation, self.hue_saturation + 1))
        saturation = int(rng.integers(-self.hue_saturation, self.hue_saturation + 1))
        alpha = float(rng.uniform(*self.contrast))
        space = _BRIGHTNESS_SPACES[int(rng.integers(len(_BRIGHTNESS_SPACES)))]
        brightness = int(rng.integers(-self.brightness, self.brightness + 1))

        levels = np.arange(256)
        hue_lut = np.mod(levels + int(round(hue * 180 / 255)), 180)  # OpenCV's uint8 hue is 0..179
        saturation_lut = np.clip(levels + saturation, 0, 255)
        contrast_lut = np.clip(np.round(_CONTRAST_CENTRE + alpha * (levels - _CONTRAST_CENTRE)), 0, 255)
        to_space, from_space, channel = space
        brightness_lut = [levels] * 3
        brightness_lut[channel] = np.clip(levels + brightness, 0, 255)
        return Jitter(_channel_lut(hue_lut, saturation_lut, levels), contrast_lut.astype(np.uint8),
                      _channel_lut(*brightness_lut), to_space, from_space)


@dataclass(frozen=True)
class Jitter:
    """One drawn colour augmentation (`ColourJitter.draw`): (T, H, W, 3) uint8 -> same, every frame alike."""

    hsv_lut: np.ndarray
    contrast_lut: np.ndarray
    brightness_lut: np.ndarray
    to_space: int
    from_space: int

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty(frames.shape, np.uint8)
        for t, frame in enumerate(frames):
            hsv = cv2.LUT(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV), self.hsv_lut)
            image = cv2.LUT(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), self.contrast_lut)
            out[t] = cv2.cvtColor(cv2.LUT(cv2.cvtColor(image, self.to_space), self.brightness_lut), self.from_space)
        return out


def _channel_lut(*tables: np.ndarray) -> np.ndarray:
    """A (256, 1, 3) uint8 table for cv2.LUT that maps each channel through its own table."""
    return np.stack(tables, axis=-1).astype(np.uint8).reshape(256, 1, 3)


VIDEO_JITTER = ColourJitter(hue_saturation=12, brightness=25)      # VIS and VOS datasets
PANOPTIC_JITTER = ColourJitter(hue_saturation=10, brightness=20)   # VPS datasets (KITTI-STEP, Cityscapes-VPS, VIPSeg)


def crop_size(height: int, width: int, factor: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of a crop `factor` (h, w) times the frame, rounded as the original."""
    return int(round(height * factor[0])), int(round(width * factor[1]))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y1, x1, y2, x2), exclusive ends, of a non-empty (H, W) mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def mask_containing_crop(mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *,
                         min_coverage: float = 0.25, tries: int = 10) -> tuple[int, int] | None:
    """Top-left (y, x) of a `size` (h, w) crop holding at least `min_coverage` of the pixels of the (H, W) mask: up
    to `tries` random corners whose crop overlaps the mask's box (the original's rule); None when all fail."""
    y1, x1, y2, x2 = _bbox(mask)
    (height, width), (ch, cw) = mask.shape, size
    needed = max(1, int(mask.sum() * min_coverage))
    y_range = (max(0, y1 - ch + 1), min(height - ch, y2 - 1))
    x_range = (max(0, x1 - cw + 1), min(width - cw, x2 - 1))
    for _ in range(tries):
        y = int(rng.integers(y_range[0], y_range[1] + 1))
        x = int(rng.integers(x_range[0], x_range[1] + 1))
        if np.count_nonzero(mask[y:y + ch, x:x + cw]) >= needed:
            return y, x
    return None


def mask_preserving_crop(mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left (y, x) of a random `size` (h, w) crop holding all of the (H, W) mask; None when the mask's box is
    not smaller than the crop (the original's rule)."""
    y1, x1, y2, x2 = _bbox(mask)
    (height, width), (ch, cw) = mask.shape, size
    if y2 - y1 >= ch or x2 - x1 >= cw:
        return None
    y = int(rng.integers(max(0, y2 - ch), min(height - ch, y1) + 1))
    x = int(rng.integers(max(0, x2 - cw), min(width - cw, x1) + 1))
    return y, x


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) labels (class ids, IGNORE for void) -> semantic (T, h, w) int64 and ignore (T, h, w) bool.

    As the original: every class (and void) is resized as its own binary mask (bilinear, > 0.5); where several
    survive the higher class id wins, where none does the class is 0. Only the classes present in a frame are resized,
    which gives the same maps as resizing all of them."""
    t, (h, w) = labels.shape[0], size
    semantic = np.zeros((t, h, w), np.int64)
    ignore = np.zeros((t, h, w), bool)
    for i, frame in enumerate(labels):
        present = np.flatnonzero(np.bincount((frame - IGNORE).ravel())) + IGNORE  # ascending, as np.unique, faster
        for value in present:
            mask = resize_masks((frame == value)[None], size)[0]
            if value == IGNORE:
                ignore[i] = mask
            else:
                np.putmask(semantic[i], mask, value)
    return semantic, ignore
