"""Inputs of the loss parity cases (see test_original_parity.py): predictions, targets and every random point,
rebuilt bit for bit from integer draws of seeded generators, so that only the original's outputs need storing.

Plain tensors only (no tarvis_fast import): the same function fed the original's criterion when the fixture was
made. Logits are multiples of 1/64 and point coordinates multiples of 2^-16, both exact in float64.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DTYPE = torch.float64
OVERSAMPLE, IMPORTANCE = 3, 0.75
DAVIS_SEQUENCE = "horsejump-high"


@dataclass(frozen=True)
class Case:
    name: str
    task: str  # "vis", "vps" or "vos"
    layers: int = 3
    batch: int = 2
    queries: int = 6
    frames: int = 2
    height: int = 32  # full resolution (targets); logits at height/4 x width/4
    width: int = 48
    classes: int = 5
    num_points: int = 64           # matcher, instance/VOS mask points and VIS semantic points
    semantic_points: int = 96      # VPS semantic points
    instances: tuple[int, ...] = (3, 1)  # per sample (VIS/VPS); objects per sample (VOS): instances[0]
    options: dict[str, float | bool] = field(default_factory=dict)  # LossConfig fields
    davis: bool = False  # targets from the real DAVIS clip (masks of its 2 objects, frames 0..T-1)


CASES = (
    Case("vis", "vis", options={"semantic_regularization_loss": True, "instance_semantic_weight_cross_entropy": 0.75}),
    Case("vis_null_few_queries", "vis", queries=2, options={"semantic_ignore_null_classes": True}),
    Case("vis_empty_sample", "vis", instances=(0, 2)),
    Case("vps", "vps", options={"semantic_regularization_loss": True, "panoptic_semantic_weight_cross_entropy": 0.75}),
    Case("vps_null", "vps", instances=(2, 0), options={"semantic_ignore_null_classes": True}),
    Case("vps_dice_no_ignore", "vps", options={"panoptic_semantic_weight_dice": 0.5}),
    Case("vos", "vos", instances=(2,)),
    Case("davis_vis", "vis", layers=3, batch=1, queries=8, frames=3, height=512, width=896, classes=3,
         num_points=12544, instances=(2,), davis=True),
    Case("davis_vos", "vos", layers=3, batch=1, frames=3, height=512, width=896, num_points=12544,
         instances=(2,), davis=True),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def _generator(case: Case, what: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{case.name}:{what}".encode()))


def _logits(case: Case, what: str, shape: tuple[int, ...]) -> Tensor:
    return torch.randint(-384, 385, shape, generator=_generator(case, what)).to(DTYPE) / 64


def _boxes(case: Case, what: str, count: int) -> Tensor:
    """(count, T, H, W) bool: one random rectangle per mask and frame, areas all different."""
    g = _generator(case, what)
    masks = torch.zeros(count, case.frames, case.height, case.width, dtype=torch.bool)
    for n in range(count):
        for t in range(case.frames):
            h = int(torch.randint(case.height // 6, case.height // 2, (1,), generator=g)) + n
            w = int(torch.randint(case.width // 6, case.width // 2, (1,), generator=g))
            y = int(torch.randint(0, case.height - h, (1,), generator=g))
            x = int(torch.randint(0, case.width - w, (1,), generator=g))
            masks[n, t, y:y + h, x:x + w] = True
    if count > 1:
        masks[1, -1] = False  # an instance absent from the last frame
    return masks


def davis_masks(root: Path, frames: int, height: int, width: int) -> Tensor:
    """(2, T, H, W) bool: the 2 objects of the DAVIS clip's first T mask PNGs, zero-padded to H x W."""
    from PIL import Image

    masks = torch.zeros(2, frames, height, width, dtype=torch.bool)
    for t in range(frames):
        ids = torch.from_numpy(np.array(Image.open(root / "osvos" / DAVIS_SEQUENCE / f"{t:05d}.png")))
        for n in range(2):
            masks[n, t, : ids.shape[0], : ids.shape[1]] = ids == n + 1
    return masks


def _mask_like_logits(case: Case, what: str, masks: Tensor) -> Tensor:
    """Logits that roughly follow masks (N, T, H, W), with per-value noise: (N, T, H/4, W/4)."""
    coarse = F.avg_pool2d(masks.to(DTYPE).flatten(0, 1)[:, None], 4).reshape(
        *masks.shape[:2], masks.shape[-2] // 4, masks.shape[-1] // 4)
    return torch.round(64 * 6 * (coarse - 0.5)) / 64 + _logits(case, what, tuple(coarse.shape)) / 3


def make_inputs(case: Case, davis_root: Path | None = None) -> dict[str, object]:
    """Predictions (L-stacked) and targets of a case, as plain tensors."""
    L, B, Q, T, C = case.layers, case.batch, case.queries, case.frames, case.classes
    h, w = case.height // 4, case.width // 4
    if case.davis:
        assert davis_root is not None, "the DAVIS cases need the DAVIS clip"
        real = davis_masks(davis_root, T, case.height, case.width)
    if case.task == "vos":
        n_obj = case.instances[0]
        masks = real[None] if case.davis else torch.stack([_boxes(case, f"objects{b}", n_obj) for b in range(B)])
        follow = torch.stack([_mask_like_logits(case, f"follow{b}", masks[b]) for b in range(B)])
        objects = torch.stack([follow + _logits(case, f"objects{l}", tuple(follow.shape)) / 2 for l in range(L)])
        background = _logits(case, "background", (L, B, 1, T, h, w))
        return {"object_logits": objects, "background_logits": background, "object_masks": masks}

    if case.davis:
        gt_masks = [real]
    else:
        gt_masks = [_boxes(case, f"instances{b}", n) for b, n in enumerate(case.instances)]
    gt_classes = [torch.randint(1, C + 1, (len(m),), generator=_generator(case, f"classes{b}"))
                  for b, m in enumerate(gt_masks)]
    mask_logits = _logits(case, "masks", (L, B, Q, T, h, w))
    for b, masks in enumerate(gt_masks):  # the first queries roughly follow the instances
        k = min(len(masks), Q)
        if k:
            mask_logits[:, b, :k] += _mask_like_logits(case, f"follow{b}", masks[:k])
    inputs: dict[str, object] = {
        "mask_logits": mask_logits,
        "class_logits": _logits(case, "classes", (L, B, Q, 1 + C)),
        "gt_masks": gt_masks,
        "gt_classes": gt_classes,
    }
    if case.task == "vis":
        inputs["semantic_logits"] = _logits(case, "semantic", (L, B, 1 + C, T, h, w))
        return inputs
    inputs["semantic_logits"] = _logits(case, "semantic", (L, B, C, T, h, w))
    g = _generator(case, "semantic map")
    coarse = torch.randint(0, C, (B, T, case.height // 8, case.width // 8), generator=g)
    inputs["semantic"] = coarse.repeat_interleave(8, 2).repeat_interleave(8, 3)
    ignore = torch.zeros(B, T, case.height, case.width, dtype=torch.bool)
    if not case.options.get("panoptic_semantic_weight_dice"):
        ignore[:, :, : case.height // 3, : case.width // 2] = True  # a void region
        ignore[-1, 0] = True                                        # a frame entirely ignored
    inputs["ignore"] = ignore
    return inputs


def point_shapes(case: Case, inputs: dict[str, object]) -> dict[str, tuple[int, ...]]:
    """The shape of every set of points the criterion asks for, by name (leading dimension: layer)."""
    def uncertain(name: str, rows: int, num_points: int) -> dict[str, tuple[int, ...]]:
        return {f"{name}.candidates": (case.layers, rows, OVERSAMPLE * num_points, 2),
                f"{name}.uniform": (case.layers, rows, num_points - int(IMPORTANCE * num_points), 2)}

    if case.task == "vos":
        rows = case.batch * (1 + case.instances[0]) * case.frames
        return uncertain("objects", rows, case.num_points)
    instance_points = case.num_points
    pairs = sum(min(len(m), case.queries) for m in inputs["gt_masks"])  # type: ignore[union-attr]
    shapes = {"match": (case.layers, case.batch, instance_points, 2)}
    if pairs:
        shapes.update(uncertain("instance", pairs * case.frames, instance_points))
    semantic_points = case.semantic_points if case.task == "vps" else case.num_points
    shapes.update(uncertain("semantic", case.batch * case.frames, semantic_points))
    return shapes


def make_points(case: Case, inputs: dict[str, object]) -> dict[str, Tensor]:
    """Every random point of a case, by name: multiples of 2^-16 in [0, 1)."""
    return {name: torch.randint(0, 2**16, shape, generator=_generator(case, f"points {name}")).to(DTYPE) / 2**16
            for name, shape in point_shapes(case, inputs).items()}
