"""What a training dataset yields (`ClipSample`) and what the trainer consumes (`TrainingBatch`).

    samples = [dataset[key] for key in keys]        # ClipSamples of one dataset and task (the batch sampler's rule)
    batch = collate(samples)                        # -> TrainingBatch: images, typed targets, VOS/PET references

A sample is one augmented clip at the training size. Its targets are per task:
- VIS: `masks` (N, T, H, W) instance masks and `classes` (N,) in 1..C;
- VPS: the same for the thing instances, plus `semantic` (T, H, W) in 0..C-1 and `ignore` (T, H, W);
- VOS / PET: `masks` (N, T, H, W) of the N given objects; the clip's frame 0 is the reference frame (SPEC §5.2), whose
  masks (VOS) or points (PET, `points` (N, 2) normalised (y, x) pixel centres) the network is given. A batch of PET
  clips may give some objects by their masks too (`collate`'s `num_point_objects`): training mixes the two.

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
    targets:          the task's typed targets (`data.targets`); VOS/PET: the masks of all N objects
    reference_masks:  VOS: (B, N_mask, 1, H, W) bool masks on frame 0 of the first N_mask objects; None when none
    reference_points: VOS/PET: (B, N - N_mask, 2) normalised (y, x) on frame 0 of the remaining objects, each given
                      by its point; None when none
    The model returns the objects in this order too: mask objects, then point objects. `task` is PET when every
    object is given by its point, else VOS.
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


def collate(samples: Sequence[ClipSample], num_point_objects: int | None = None) -> TrainingBatch:
    """Stack samples of one dataset and task into a batch; VOS/PET samples must have the same object count.

    num_point_objects: VOS/PET: how many of the objects, the last ones, are given by their points (PET samples carry
                       them); None: all for PET samples, none for VOS samples.
    """
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
        count = masks.shape[1]
        if num_point_objects is None:
            num_point_objects = count if first.task is Task.PET else 0
        if not 0 <= num_point_objects <= count or (num_point_objects and first.task is not Task.PET):
            raise ValueError(f"{first.dataset}: {num_point_objects} point objects of {count} need as many objects "
                             f"in PET samples (which carry points), got {first.task.short_name} samples")
        num_mask_objects = count - num_point_objects
        points = torch.stack([s.points for s in samples])[:, num_mask_objects:] if num_point_objects else None
        return TrainingBatch(first.dataset, Task.VOS if num_mask_objects else Task.PET, images, ObjectTargets(masks),
                             reference_masks=masks[:, :num_mask_objects, :1] if num_mask_objects else None,
                             reference_points=points, meta=meta)
    instances = InstanceTargets(tuple(s.masks for s in samples), tuple(s.classes for s in samples))
    if first.task is Task.VIS:
        return TrainingBatch(first.dataset, first.task, images, instances, meta=meta)
    targets = PanopticTargets(instances, torch.stack([s.semantic for s in samples]),
                              torch.stack([s.ignore for s in samples]))
    return TrainingBatch(first.dataset, first.task, images, targets, meta=meta)
