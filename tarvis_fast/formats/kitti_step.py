"""KITTI-STEP panoptic PNGs, ground truth and predictions alike.

Each frame is a 3-channel PNG: R = semantic id (0-18, 255 = void), G·256 + B = instance (track) id, 0 meaning "no
instance" (a crowd region where the class is a thing). Layout: `<root>/<sequence>/<frame>.png`, e.g.
`panoptic_maps/val/0002/000000.png` for the ground truth and `<pred>/0002/000000.png` for predictions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tarvis_fast.formats.atomic import atomic_open

VAL_SEQUENCES = ("0002", "0006", "0007", "0008", "0010", "0013", "0014", "0016", "0018")
NUM_CLASSES = 19
THING_CLASSES = (11, 13)  # person, car
IGNORE_LABEL = 255
# The official evaluation packs a pixel as semantic · 1000 + instance, so instance ids must stay below 1000.
MAX_INSTANCES_PER_CATEGORY = 1000


class KittiStepFormatError(ValueError):
    """A KITTI-STEP file is malformed; the message names the file (and so the sequence and frame)."""


def read_kitti_step_png(path: Path, *, expected_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PNG -> (semantic, instance), both (H, W) int64, checked against the label space: semantic ids in
    [0, NUM_CLASSES) or IGNORE_LABEL, instance ids below MAX_INSTANCES_PER_CATEGORY, size `expected_shape` if given."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA"):
                raise KittiStepFormatError(f"{path}: KITTI-STEP PNG must be 3-channel RGB, got mode {image.mode!r}")
            rgb = np.asarray(image)[..., :3].astype(np.int64)
    except FileNotFoundError:
        raise KittiStepFormatError(f"{path}: frame not found") from None
    except OSError as err:
        raise KittiStepFormatError(f"{path}: not a readable PNG ({err})") from None
    if expected_shape is not None and rgb.shape[:2] != tuple(expected_shape):
        raise KittiStepFormatError(f"{path}: size {rgb.shape[1]}x{rgb.shape[0]} (WxH) differs from the ground "
                                   f"truth's {expected_shape[1]}x{expected_shape[0]}")
    semantic, instance = rgb[..., 0], rgb[..., 1] * 256 + rgb[..., 2]
    bad = np.unique(semantic[(semantic >= NUM_CLASSES) & (semantic != IGNORE_LABEL)])
    if bad.size:
        raise KittiStepFormatError(f"{path}: unknown semantic ids {bad[:10].tolist()} (valid: 0-{NUM_CLASSES - 1} "
                                   f"and {IGNORE_LABEL})")
    if instance.max(initial=0) >= MAX_INSTANCES_PER_CATEGORY:
        raise KittiStepFormatError(f"{path}: instance id {int(instance.max())} >= {MAX_INSTANCES_PER_CATEGORY}, "
                                   "which the official STQ encoding (semantic·1000 + instance) cannot represent")
    return semantic, instance


def write_kitti_step_png(path: Path, semantic: np.ndarray, instance: np.ndarray) -> None:
    """(H, W) semantic and instance ids -> PNG at `path` (R = semantic, G = instance // 256, B = instance % 256),
    written atomically."""
    if semantic.shape != instance.shape or semantic.ndim != 2:
        raise ValueError(f"semantic and instance must both be (H, W), got {semantic.shape} and {instance.shape}")
    if semantic.min(initial=0) < 0 or semantic.max(initial=0) > 255:
        raise ValueError("semantic ids must lie in [0, 255]")
    if instance.min(initial=0) < 0 or instance.max(initial=0) >= MAX_INSTANCES_PER_CATEGORY:
        raise ValueError(f"instance ids must lie in [0, {MAX_INSTANCES_PER_CATEGORY})")
    instance = instance.astype(np.int64)
    rgb = np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)
    with atomic_open(path, "wb") as handle:
        Image.fromarray(rgb).save(handle, format="PNG")


def read_kitti_step_gt(gt_dir: Path, sequences: tuple[str, ...] | None = None) -> dict[str, list[Path]]:
    """Ground-truth frames per sequence, sorted by file name. `sequences` defaults to every sub-folder of `gt_dir`
    (for `panoptic_maps/val` these are the 9 validation sequences)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise KittiStepFormatError(f"{gt_dir}: ground-truth folder not found")
    names = sequences if sequences is not None else tuple(sorted(p.name for p in gt_dir.iterdir() if p.is_dir()))
    if not names:
        raise KittiStepFormatError(f"{gt_dir}: no sequence folders")
    frames = {}
    for name in names:
        pngs = sorted((gt_dir / name).glob("*.png"))
        if not pngs:
            raise KittiStepFormatError(f"{gt_dir / name}: no PNG frames")
        frames[name] = pngs
    return frames


def kitti_step_prediction_paths(pred_dir: Path, gt: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """The prediction PNG for every ground-truth frame (same sequence folder and file name); missing ones are
    reported by name. Extra predicted frames are ignored, as by the official evaluator."""
    pred = {name: [Path(pred_dir) / name / png.name for png in pngs] for name, pngs in gt.items()}
    missing = [str(p) for paths in pred.values() for p in paths if not p.is_file()]
    if missing:
        raise KittiStepFormatError(f"{len(missing)} predicted frames missing, e.g. {', '.join(missing[:3])}")
    return pred
