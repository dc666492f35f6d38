"""Training clips from annotated videos: frame sampling and augmentation as the original (SPEC §5.2).

    source = VideoClipSource("DAVIS", Task.VOS, video_set, settings)
    sample = source.sample(rng, Task.PET, num_objects=2)   # a ClipSample; retried until usable

VIS / VPS clip: a reference frame holding an instance, T-1 more frames drawn without replacement from
[ref - R, ref + R] (R = round(factor * T)), sorted (Cityscapes-VPS: T consecutive frames); colour jitter (the same for
all frames, on BGR); horizontal flip p=0.5; a crop of `crop_factor` x the frame keeping >= 25% of the instances'
pixels (none if 10 tries fail); min-dim resize; instances emptied by all this are dropped. The colour jitter is drawn
where the original draws it but applied to the final frames (fewer pixels): it is pixel-wise, so this is exact for
flips and crops and differs only by interpolation rounding at colour edges for the resize.

VOS / PET clip: a reference frame t < len - T holding >= n objects is frame 0 of the clip, T-1 more frames drawn from
(t, t + R), sorted; n of t's objects at random; colour jitter; resize first, then flip, then a crop of `crop_factor`
(the original's 0.75 x 0.75 unless the config says otherwise) x the frame keeping the whole of the objects' frame-0
masks (skipped when impossible). PET points are the frame-0 masks' interior points.

A clip with nothing left (no instance after cropping, an object gone from frame 0) is unusable: `sample` draws another
with the same generator, and counts it in `meta["retries"]`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tarvis_fast.data.augment import ColourJitter, crop_size, mask_containing_crop, mask_preserving_crop, resize_labels
from tarvis_fast.data.points import points_from_masks
from tarvis_fast.data.sample import ClipSample
from tarvis_fast.data.videos import DataError, Video, VideoSet
from tarvis_fast.resize import min_dim_size, resize_frames, resize_masks
from tarvis_fast.tasks import Task

MAX_OBJECTS = 4          # VOS/PET samples have 1..4 objects (the original's max_num_instances)
MAX_TRIES = 50           # unusable draws in a row before a dataset is declared unusable


class UnusableDatasetError(DataError):
    """`MAX_TRIES` draws in a row gave no usable clip."""


@dataclass(frozen=True)
class Resize:
    """min_dims: the shorter side is one of these (random), capped so the longer side stays <= max_dim (SPEC §4);
    None keeps the native size."""

    min_dims: tuple[int, ...] | None
    max_dim: int = 1333

    def size(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int]:
        if self.min_dims is None:
            return height, width
        return min_dim_size(height, width, self.min_dims[int(rng.integers(len(self.min_dims)))], self.max_dim)


@dataclass(frozen=True)
class ClipSettings:
    clip_length: int
    frame_range: int                   # R = round(frame_sampling_multiplicative_factor * T)
    resize: Resize
    crop_factor: tuple[float, float]   # (h, w) of the crop relative to the frame (VOS: of the resized frame)
    colour: ColourJitter
    consecutive: bool = False          # VIS/VPS: T consecutive frames from a random start (Cityscapes-VPS)


class ClipSource(ABC):
    """A dataset as the loader sees it: a name, the task of its annotations, and random clips."""

    name: str
    task: Task           # VIS, VPS or VOS (a VOS source also gives PET clips)
    pseudo_video = False  # image datasets: any task, drawn by the pre-training task weights
    category_names: Mapping[int, str] = {}   # the dataset's category id -> name (previews)

    def object_counts(self) -> tuple[int, ...]:
        """The VOS/PET object counts this source can give (each with at least one candidate reference frame)."""
        return ()

    def sample(self, rng: np.random.Generator, task: Task, num_objects: int | None = None) -> ClipSample:
        """A usable clip for `task` (VOS/PET: with `num_objects` objects); unusable draws are retried with the same
        generator and counted in `meta["retries"]`."""
        for tries in range(MAX_TRIES):
            sample = self._draw(rng, task, num_objects)
            if sample is not None:
                return _with_meta(sample, retries=tries)
        raise UnusableDatasetError(f"{self.name}: {MAX_TRIES} clips in a row were unusable for {task.short_name} "
                                   "(no instance left after cropping and resizing); check its annotations")

    @abstractmethod
    def _draw(self, rng: np.random.Generator, task: Task, num_objects: int | None) -> ClipSample | None:
        """One clip, or None when it turned out unusable."""


def _with_meta(sample: ClipSample, **extra: Any) -> ClipSample:
    return ClipSample(sample.dataset, sample.task, sample.images, sample.masks, sample.classes, sample.semantic,
                      sample.ignore, sample.points, {**sample.meta, **extra})


def to_tensor_images(frames_bgr: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 BGR -> (T, 3, H, W) uint8 RGB."""
    return torch.from_numpy(np.ascontiguousarray(frames_bgr[..., ::-1].transpose(0, 3, 1, 2)))


def object_sample(dataset: str, task: Task, frames_bgr: np.ndarray, masks: np.ndarray,
                  meta: dict[str, Any]) -> ClipSample | None:
    """A VOS/PET ClipSample from augmented frames (T, H, W, 3) BGR and object masks (N, T, H, W); None when an
    object is not visible on the reference frame 0."""
    if not masks[:, 0].any(axis=(1, 2)).all():
        return None
    mask_tensor = torch.from_numpy(np.ascontiguousarray(masks))
    points = points_from_masks(mask_tensor[None, :, 0])[0] if task is Task.PET else None
    return ClipSample(dataset, task, to_tensor_images(frames_bgr), mask_tensor, points=points,
                      meta={**meta, "size": list(masks.shape[2:])})


def instance_sample(dataset: str, task: Task, frames_bgr: np.ndarray, masks: np.ndarray, classes: np.ndarray,
                    labels: tuple[np.ndarray, np.ndarray] | None, meta: dict[str, Any]) -> ClipSample | None:
    """A VIS/VPS ClipSample from augmented frames (T, H, W, 3) BGR, instance masks (N, T, H, W), classes (N,) 1..C
    and, for VPS, (semantic (T, H, W), ignore (T, H, W)); instances without a pixel are dropped, None if none is left."""
    keep = masks.any(axis=(1, 2, 3))
    if not keep.any():
        return None
    semantic, ignore = (None, None) if labels is None else (torch.from_numpy(labels[0]), torch.from_numpy(labels[1]))
    kept_meta = {key: [v for v, k in zip(value, keep) if k] if key in ("instance_ids", "category_ids") else value
                 for key, value in meta.items()}
    return ClipSample(dataset, task, to_tensor_images(frames_bgr), torch.from_numpy(np.ascontiguousarray(masks[keep])),
                      classes=torch.from_numpy(classes[keep].astype(np.int64)), semantic=semantic, ignore=ignore,
                      meta={**kept_meta, "size": list(masks.shape[2:])})


def _flip(rng: np.random.Generator, frames: np.ndarray, *maps: np.ndarray) -> tuple[bool, np.ndarray, list[np.ndarray]]:
    """With p=0.5, flip frames (T, H, W, 3) and maps (..., H, W) horizontally."""
    if rng.random() >= 0.5:
        return False, frames, list(maps)
    return True, frames[:, :, ::-1], [m[..., ::-1] for m in maps]


class VideoClipSource(ClipSource):
    """Clips of one video dataset, for its task (VOS datasets: VOS and PET)."""

    def __init__(self, name: str, task: Task, video_set: VideoSet, settings: ClipSettings):
        self.name, self.task, self.settings = name, task, settings
        self.category_ids, self.category_names = video_set.category_ids, video_set.category_names
        self.videos: tuple[Video, ...] = tuple(v for v in video_set.videos if v.instance_ids)
        # VIS/VPS: the frames holding an instance, per video
        self._annotated = [np.flatnonzero([bool(ids) for ids in v.instances]) for v in self.videos]
        # VOS: candidate (video, reference frame) pairs per object count n, with >= n objects on the frame
        self._candidates: dict[int, np.ndarray] = {}
        if task is Task.VOS:
            pairs = [(v, t, min(len(video.instances[t]), MAX_OBJECTS)) for v, video in enumerate(self.videos)
                     for t in range(len(video) - settings.clip_length) if video.instances[t]]
            for n in range(1, MAX_OBJECTS + 1):
                chosen = [(v, t) for v, t, count in pairs if count >= n]
                if chosen:
                    self._candidates[n] = np.asarray(chosen, np.int64)
            if not self._candidates:
                raise DataError(f"{name}: no video has an annotated object on a frame followed by "
                                f"{settings.clip_length - 1} more frames (clip length {settings.clip_length})")

    def object_counts(self) -> tuple[int, ...]:
        return tuple(sorted(self._candidates))

    def _draw(self, rng: np.random.Generator, task: Task, num_objects: int | None) -> ClipSample | None:
        if task.guided_by_objects:
            if num_objects not in self._candidates:
                raise ValueError(f"{self.name}: no clip with {num_objects} objects; counts: {self.object_counts()}")
            return self._draw_objects(rng, task, num_objects)
        if task is not self.task:
            raise ValueError(f"{self.name} is a {self.task.short_name} dataset; it cannot give {task.short_name} clips")
        return self._draw_instances(rng, task)

    def _instance_frames(self, rng: np.random.Generator, v: int) -> list[int]:
        length, clip = len(self.videos[v]), self.settings.clip_length
        if self.settings.consecutive:
            start = int(rng.integers(0, max(length - clip, 0) + 1))
            return [min(start + i, length - 1) for i in range(clip)]
        ref = int(rng.choice(self._annotated[v]))
        span = self.settings.frame_range
        others = [t for t in range(max(0, ref - span), min(length, ref + span + 1)) if t != ref]
        if not others:
            others = [ref]
        # short videos repeat frames, which the original could not sample at all
        picked = rng.choice(others, clip - 1, replace=len(others) < clip - 1)
        return sorted([ref, *(int(t) for t in picked)])

    def _draw_instances(self, rng: np.random.Generator, task: Task) -> ClipSample | None:
        v = int(rng.integers(len(self.videos)))
        video, frames = self.videos[v], self._instance_frames(rng, v)
        ids = sorted(set().union(*(video.instances[t] for t in frames)))
        if not ids:
            return None
        images = video.load_images(frames)
        jitter = self.settings.colour.draw(rng)   # applied to the final frames, where it costs least
        masks = video.load_masks(frames, ids)
        labels = video.load_labels(frames) if task is Task.VPS else None
        flipped, images, (masks, *rest) = _flip(rng, images, masks, *([] if labels is None else [labels]))
        height, width = images.shape[1:3]
        size = crop_size(height, width, self.settings.crop_factor)
        corner = mask_containing_crop(masks.any(axis=(0, 1)), size, rng)
        if corner is not None:
            (y, x), (h, w) = corner, size
            images, masks = images[:, y:y + h, x:x + w], masks[..., y:y + h, x:x + w]
            rest = [labels_[:, y:y + h, x:x + w] for labels_ in rest]
        out = self.settings.resize.size(*images.shape[1:3], rng)
        images = jitter(resize_frames(np.ascontiguousarray(images), out))
        masks = resize_masks(masks.reshape(-1, *masks.shape[2:]), out).reshape(len(ids), len(frames), *out)
        resized_labels = resize_labels(np.ascontiguousarray(rest[0]), out) if rest else None
        classes = np.asarray([video.classes[i] for i in ids], np.int64)
        meta = {"source": video.name, "frames": frames, "flipped": flipped, "crop": corner, "instance_ids": ids,
                "category_ids": [self.category_ids.get(int(c), int(c)) for c in classes]}
        return instance_sample(self.name, task, images, masks, classes, resized_labels, meta)

    def _draw_objects(self, rng: np.random.Generator, task: Task, num_objects: int) -> ClipSample | None:
        candidates = self._candidates[num_objects]
        v, ref = (int(i) for i in candidates[int(rng.integers(len(candidates)))])
        video = self.videos[v]
        ids = sorted(int(i) for i in rng.choice(sorted(video.instances[ref]), num_objects, replace=False))
        # the original's window (t, t + R); R >= T keeps T - 1 frames in it (candidates have t < len - T)
        later = np.arange(ref + 1, min(len(video), ref + max(self.settings.frame_range, self.settings.clip_length)))
        frames = [ref, *sorted(int(t) for t in rng.choice(later, self.settings.clip_length - 1, replace=False))]
        images = video.load_images(frames)
        jitter = self.settings.colour.draw(rng)   # applied to the final frames, where it costs least
        masks = video.load_masks(frames, ids)
        out = self.settings.resize.size(*images.shape[1:3], rng)
        images = resize_frames(images, out)
        masks = resize_masks(masks.reshape(-1, *masks.shape[2:]), out).reshape(num_objects, len(frames), *out)
        flipped, images, (masks,) = _flip(rng, images, masks)
        size = crop_size(*out, self.settings.crop_factor)
        corner = mask_preserving_crop(masks[:, 0].any(0), size, rng) if masks[:, 0].any() else None
        if corner is not None:
            (y, x), (h, w) = corner, size
            images, masks = images[:, y:y + h, x:x + w], masks[..., y:y + h, x:x + w]
        images = jitter(images)
        meta = {"source": video.name, "frames": frames, "flipped": flipped, "resized": list(out), "crop": corner,
                "instance_ids": ids}
        return object_sample(self.name, task, images, masks, meta)
