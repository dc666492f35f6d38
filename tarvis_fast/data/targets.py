"""Typed training targets, one per task family, as the losses consume them (SPEC §5.3).

All masks are at the full (padded) input resolution H x W; the model's logits are at H/4 x W/4. B is the batch,
T the clip length. The types are frozen: a target is built once by the data pipeline and only read afterwards.

- `InstanceTargets` (VIS): per sample, N_b instance masks over the clip and their classes.
- `PanopticTargets` (VPS): the instance targets plus a dense semantic map with an ignore mask.
- `ObjectTargets` (VOS, PET): per sample, N object masks over the clip (the same N for every sample of a batch,
  as the network gives every sample the same number of object channels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _check_masks(masks: Tensor, what: str, ndim: int) -> None:
    if masks.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"{what} must be bool, got {masks.dtype}")


@dataclass(frozen=True)
class InstanceTargets:
    """Video instance segmentation targets.

    masks:   per sample b, a bool tensor (N_b, T, H, W); N_b may be 0 and an instance may be absent from frames
    classes: per sample b, an int64 tensor (N_b,) of class ids in 1..C (0 is the no-object class)
    """

    masks: tuple[Tensor, ...]
    classes: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        if len(self.masks) == 0 or len(self.masks) != len(self.classes):
            raise ValueError(f"need one mask tensor and one class tensor per sample, got {len(self.masks)} "
                             f"and {len(self.classes)}")
        clip_shape = self.masks[0].shape[1:]
        for b, (masks, classes) in enumerate(zip(self.masks, self.classes)):
            _check_masks(masks, f"masks[{b}]", 4)
            if masks.shape[1:] != clip_shape:
                raise ValueError(f"masks[{b}] covers {tuple(masks.shape[1:])}, masks[0] {tuple(clip_shape)}")
            if classes.shape != (masks.shape[0],) or classes.dtype != torch.int64:
                raise ValueError(f"classes[{b}] must be int64 of shape ({masks.shape[0]},), "
                                 f"got {classes.dtype} {tuple(classes.shape)}")
            if classes.numel() and int(classes.min()) < 1:
                raise ValueError(f"classes[{b}] must be >= 1 (0 is the no-object class), got {classes.tolist()}")

    @property
    def batch_size(self) -> int:
        return len(self.masks)

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return tuple(self.masks[0].shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class PanopticTargets:
    """Video panoptic segmentation targets.

    instances: the thing instances (classes 1..C, as for VIS)
    semantic:  (B, T, H, W) int64 class ids in 0..C-1 (stuff and things alike); any value >= 0 where ignored
    ignore:    (B, T, H, W) bool, True where the semantic loss must not look (void, padding)
    """

    instances: InstanceTargets
    semantic: Tensor
    ignore: Tensor

    def __post_init__(self) -> None:
        expected = (self.instances.batch_size, *self.instances.clip_shape)
        if tuple(self.semantic.shape) != expected or self.semantic.dtype != torch.int64:
            raise ValueError(f"semantic must be int64 of shape {expected}, got {self.semantic.dtype} "
                             f"{tuple(self.semantic.shape)}")
        _check_masks(self.ignore, "ignore", 4)
        if tuple(self.ignore.shape) != expected:
            raise ValueError(f"ignore must have shape {expected}, got {tuple(self.ignore.shape)}")
        if self.semantic.numel() and int(self.semantic.min()) < 0:
            raise ValueError("semantic class ids must be >= 0 (mark void pixels in `ignore` instead)")


@dataclass(frozen=True)
class ObjectTargets:
    """VOS / PET targets: the masks of the given objects, in the order of the model's object channels.

    masks: (B, N, T, H, W) bool; an object may be absent from some frames (its background is then the frame)
    """

    masks: Tensor

    def __post_init__(self) -> None:
        _check_masks(self.masks, "masks", 5)
        if self.masks.shape[1] == 0:
            raise ValueError("VOS/PET targets need at least one object per sample")
