"""What a training dataset yields (`ClipSample`) and what the trainer consumes (`TrainingBatch`).

    samples = [dataset[key] for key in keys]        # ClipSamples of one dataset and task (the batch sampler's rule)
    batch = collate(samples)                        # -> TrainingBatch: images, typed targets, VOS/PET references

A sample is one augmented clip at the training size. Its targets are per task:
- VIS: `masks` (N, T, H, W) instance masks and `classes` (N,) in 1..C;
- VPS: the same for the thing instances, plus `semantic` (T, H, W) in 0..C-1 and `ignore` (T, H, W);
- VOS / PET: `masks` (N, T, H, W) of the N given objects; the clip's frame 0 is the reference frame (SPEC §5.2), whose
  masks (VOS) or points (PET, `points` (N, 2) normalised (y, x) pixel centres) the network is given.

This module is the contract between the data pipeline and the trainer: it imports torch and the neutral rooms only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.tasks import Task


@dataclass(frozen=True)
class ClipSample:
    """One training clip.

    images:   (T, 3, H, W) uint8 RGB
    masks:    (N, T, H, W) bool: instances (VIS, VPS things) or given objects (VOS, PET)
    classes:  (N,) int64 in 1..C (VIS, VPS); None for VOS/PET
    semantic: (T, H, W) int64 in 0..C-1 (VPS); None otherwise
    ignore:   (T, H, W) bool, True where the semantic loss must not look (VPS); None otherwise
    points:   (N, 2) float32 normalised (y, x) of each object's point on frame 0 (PET); None otherwise
    meta:     provenance for previews and debugging: source video/image id, source frame indices, flipped, ...
    """

    dataset: str
    task: Task
    images: Tensor
    masks: Tensor
    classes: Tensor | None = None
    semantic: Tensor | None = None
    ignore: Tensor | None = None
    points: Tensor | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.dtype != torch.uint8:
            raise ValueError(f"{self.dataset}: images must be uint8 (T, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        clip = (self.images.shape[0], *self.images.shape[2:])
        if self.masks.dtype != torch.bool or self.masks.ndim != 4 or tuple(self.masks.shape[1:]) != clip:
            raise ValueError(f"{self.dataset}: masks must be bool (N, {', '.join(map(str, clip))}), got "
                             f"{self.masks.dtype} {tuple(self.masks.shape)}")
        needs = {Task.VIS: ("classes",), Task.VPS: ("classes", "semantic", "ignore"), Task.VOS: (),
                 Task.PET: ("points",)}[self.task]
        for name in ("classes", "semantic", "ignore", "points"):
            if (getattr(self, name) is not None) != (name in needs):
                verb = "needs" if name in needs else "has no"
                raise ValueError(f"{self.dataset}: a {self.task.short_name} sample {verb} {name}")
        num_masks = self.masks.shape[0]
        if self.classes is not None and tuple(self.classes.shape) != (num_masks,):
            raise ValueError(f"{self.dataset}: classes must be ({num_masks},), got {tuple(self.classes.shape)}")
        if self.task.guided_by_objects and (self.masks.shape[0] == 0 or not self.masks[:, 0].flatten(1).any(1).all()):
            raise ValueError(f"{self.dataset}: every VOS/PET object must be visible on the reference frame (frame 0)")
        if self.points is not None and tuple(self.points.shape) != (num_masks, 2):
            raise ValueError(f"{self.dataset}: points must be ({num_masks}, 2), got {tuple(self.points.shape)}")

    @property
    def num_objects(self) -> int:
        return self.masks.shape[0]


@dataclass(frozen=True)
class TrainingBatch:
    """One micro-batch of one dataset and task, ready for the network and the losses.

    images:           (B, T, 3, H, W) float32 RGB 0..255, what `TarViS.forward` takes
    targets:          the task's typed targets (`data.targets`)
    reference_masks:  VOS: (B, N, 1, H, W) bool masks of the objects on frame 0; None otherwise
    reference_points: PET: (B, N, 2) normalised (y, x) of each object's point on frame 0; None otherwise
    meta:             each sample's `ClipSample.meta`
    """

    dataset: str
    task: Task
    images: Tensor
    targets: InstanceTargets | PanopticTargets | ObjectTargets
    reference_masks: Tensor | None = None
    reference_points: Tensor | None = None
    meta: tuple[Mapping[str, Any], ...] = ()

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]


def collate(samples: Sequence[ClipSample]) -> TrainingBatch:
    """Stack samples of one dataset and task into a batch; VOS/PET samples must have the same object count."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    first = samples[0]
    for sample in samples[1:]:
        if (sample.dataset, sample.task) != (first.dataset, first.task):
            raise ValueError(f"a batch holds one dataset and task; got {first.dataset}/{first.task.short_name} and "
                             f"{sample.dataset}/{sample.task.short_name} (the batch sampler groups them)")
        if sample.images.shape != first.images.shape:
            raise ValueError(f"clips of one batch must have one size; got {tuple(first.images.shape)} and "
                             f"{tuple(sample.images.shape)}")
    images = torch.stack([s.images for s in samples]).float()
    meta = tuple(s.meta for s in samples)
    if first.task.guided_by_objects:
        counts = {s.num_objects for s in samples}
        if len(counts) > 1:
            raise ValueError(f"VOS/PET samples of one batch need one object count, got {sorted(counts)}")
        masks = torch.stack([s.masks for s in samples])
        if first.task is Task.PET:
            return TrainingBatch(first.dataset, first.task, images, ObjectTargets(masks),
                                 reference_points=torch.stack([s.points for s in samples]), meta=meta)
        return TrainingBatch(first.dataset, first.task, images, ObjectTargets(masks),
                             reference_masks=masks[:, :, :1], meta=meta)
    instances = InstanceTargets(tuple(s.masks for s in samples), tuple(s.classes for s in samples))
    if first.task is Task.VIS:
        return TrainingBatch(first.dataset, first.task, images, instances, meta=meta)
    targets = PanopticTargets(instances, torch.stack([s.semantic for s in samples]),
                              torch.stack([s.ignore for s in samples]))
    return TrainingBatch(first.dataset, first.task, images, targets, meta=meta)
