"""STQ (segmentation and tracking quality, Weber et al. 2021) for KITTI-STEP and VIPSeg (EVAL.md §4).

STQ = sqrt(AQ · IoU).
- AQ: thing pixels only, ground-truth crowd (thing class, instance 0) removed from both sides. Per sequence,
  Σ_g (1/|g|) Σ_p TPA(p,g) · TPA / (TPA + FPA + FNA) over ground-truth tracks g and predicted tracks p; AQ divides
  the sum over all sequences by the number of ground-truth tracks in all of them.
- IoU: mean class IoU of the semantic confusion matrix (ignore label as an extra class whose ground-truth row is
  zeroed, so predicting void on a labelled pixel is a miss), over the classes with a non-zero union.

All pixel counts are int64, as in deeplab2's TensorFlow STQ that the official numbers come from. Work is vectorised
per frame (one bincount for the confusion, np.unique on packed ids for the track tables) and parallel over sequences.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tarvis_fast.evaluation.parallel import image_seconds, parallel_map
from tarvis_fast.formats import kitti_step
from tarvis_fast.formats.panoptic import Category, Segment

_INSTANCE_BITS = 16  # a track is (semantic << 16) | instance; instance ids stay below 2**16
_PAIR_BITS = 24      # an intersection is (gt track << 24) | predicted track; tracks stay below 2**24
_EPSILON = 1e-15     # the official guard against empty denominators

VIPSEG_NUM_CLASSES = 124  # hard-coded in the VIPSeg STQ script
VIPSEG_VOID = 255         # semantic and instance value the VIPSeg script gives unlabelled pixels


@dataclass(frozen=True)
class StqLabels:
    """Label space: classes 0..num_classes-1, `ignore_label` (>= num_classes) marks void pixels."""

    num_classes: int
    thing_classes: tuple[int, ...]
    ignore_label: int = 255

    def __post_init__(self) -> None:
        if self.ignore_label < self.num_classes:
            raise ValueError(f"ignore_label {self.ignore_label} must be >= num_classes {self.num_classes}")


# CPU seconds per ground-truth pixel, for choosing between one process and a pool (parallel.py): 87 ns on a
# synthetic KITTI-STEP set (4 sequences of 2-5 frames at 375x1242) on a busy 2-core machine.
KITTI_STEP_SECONDS_PER_PIXEL = 9e-8
KITTI_STEP_LABELS = StqLabels(kitti_step.NUM_CLASSES, kitti_step.THING_CLASSES, kitti_step.IGNORE_LABEL)


@dataclass(frozen=True)
class SequenceStq:
    """What one sequence contributes to STQ."""

    confusion: np.ndarray  # (C+1, C+1) int64: rows ground truth, columns prediction, index C = ignore
    aq_sum: float          # Σ_g (1/|g|) Σ_p TPA²/(TPA+FPA+FNA)
    num_tubes: int         # ground-truth tracks
    length: int            # frames


def _sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse.ravel(), weights=counts, minlength=len(unique)).astype(np.int64)


class SequenceAccumulator:
    """Collects one sequence's counts frame by frame; `result()` gives its `SequenceStq`."""

    def __init__(self, labels: StqLabels):
        self.labels = labels
        size = labels.num_classes + 1
        self._confusion = np.zeros(size * size, np.int64)
        self._tables: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"gt": [], "pred": [], "pairs": []}
        self._length = 0

    def _class_index(self, semantic: np.ndarray, side: str) -> np.ndarray:
        index = np.where(semantic == self.labels.ignore_label, self.labels.num_classes, semantic)
        if index.size and (index.min() < 0 or index.max() > self.labels.num_classes):
            bad = np.unique(semantic[(index < 0) | (index > self.labels.num_classes)])
            raise ValueError(f"{side} semantic ids {bad[:10].tolist()} are outside the label space")
        return index

    def add_frame(self, gt_semantic: np.ndarray, gt_instance: np.ndarray, pred_semantic: np.ndarray,
                  pred_instance: np.ndarray) -> None:
        """All four (H, W) integer maps of one frame."""
        shapes = {a.shape for a in (gt_semantic, gt_instance, pred_semantic, pred_instance)}
        if len(shapes) != 1:
            raise ValueError(f"maps of one frame differ in shape: {sorted(shapes)}")
        for name, instance in (("ground-truth", gt_instance), ("predicted", pred_instance)):
            if instance.size and (instance.min() < 0 or instance.max() >= 1 << _INSTANCE_BITS):
                raise ValueError(f"{name} instance ids must lie in [0, {1 << _INSTANCE_BITS})")
        size = self.labels.num_classes + 1
        gt_class = self._class_index(gt_semantic, "ground-truth")
        pred_class = self._class_index(pred_semantic, "predicted")
        self._confusion += np.bincount((gt_class * size + pred_class).ravel(), minlength=size * size)

        things = list(self.labels.thing_classes)
        gt_thing = np.isin(gt_semantic, things)
        crowd = gt_thing & (gt_instance == 0)
        gt_mask = gt_thing & ~crowd
        pred_mask = np.isin(pred_semantic, things) & ~crowd
        gt_tracks = (gt_semantic.astype(np.int64) << _INSTANCE_BITS) | gt_instance
        pred_tracks = (pred_semantic.astype(np.int64) << _INSTANCE_BITS) | pred_instance
        both = gt_mask & pred_mask
        for table, values in (("gt", gt_tracks[gt_mask]), ("pred", pred_tracks[pred_mask]),
                              ("pairs", (gt_tracks[both] << _PAIR_BITS) | pred_tracks[both])):
            self._tables[table].append(np.unique(values, return_counts=True))
        self._length += 1

    def _table(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        parts = self._tables[name]
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _sum_by_key(np.concatenate([k for k, _ in parts]), np.concatenate([c for _, c in parts]))

    def result(self) -> SequenceStq:
        gt_ids, gt_sizes = self._table("gt")
        pred_ids, pred_sizes = self._table("pred")
        pairs, tpa = self._table("pairs")
        gt_index = np.searchsorted(gt_ids, pairs >> _PAIR_BITS)
        pred_index = np.searchsorted(pred_ids, pairs & ((1 << _PAIR_BITS) - 1))
        tpa = tpa.astype(np.float64)
        # TPA + FPA + FNA = |p| + |g| - TPA
        weighted_iou = tpa * (tpa / (pred_sizes[pred_index] + gt_sizes[gt_index] - tpa))
        per_gt = np.bincount(gt_index, weights=weighted_iou, minlength=len(gt_ids))
        size = self.labels.num_classes + 1
        return SequenceStq(self._confusion.reshape(size, size).copy(), float(np.sum(per_gt / gt_sizes)),
                           len(gt_ids), self._length)


def _mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes with a non-zero union (NaN when there is none)."""
    intersections = confusion.diagonal()
    unions = confusion.sum(axis=0) + confusion.sum(axis=1) - intersections
    n = np.count_nonzero(unions)
    return float(np.sum(intersections / np.maximum(unions, _EPSILON)) / n) if n else float("nan")


def _json_number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def stq_result(sequences: Sequence[SequenceStq], names: Sequence[str]) -> dict:
    """Combine sequences into the official statistics (names as deeplab2 prints them; ID_per_seq holds the names).
    Undefined values (no labelled class in a sequence) are None."""
    confusions = []
    for seq in sequences:
        confusion = seq.confusion.copy()
        confusion[-1, :] = 0  # the ignore label's ground-truth row
        confusions.append(confusion)
    iou_per_seq = [_mean_iou(c) for c in confusions]
    iou = _mean_iou(np.sum(confusions, axis=0)) if confusions else float("nan")
    aq_sums = np.array([s.aq_sum for s in sequences])
    tubes = np.array([s.num_tubes for s in sequences])
    aq = float(aq_sums.sum() / max(tubes.sum(), _EPSILON))
    aq_per_seq = aq_sums / np.maximum(tubes, _EPSILON)
    return {
        "STQ": _json_number(np.sqrt(aq * iou)),
        "AQ": aq,
        "IoU": _json_number(iou),
        "STQ_per_seq": [_json_number(np.sqrt(a * i)) for a, i in zip(aq_per_seq, iou_per_seq)],
        "AQ_per_seq": [float(a) for a in aq_per_seq],
        "IoU_per_seq": [_json_number(i) for i in iou_per_seq],
        "ID_per_seq": list(names),
        "Length_per_seq": [s.length for s in sequences],
    }


# ----------------------------------------------------------------------------------------------- KITTI-STEP


def _kitti_step_sequence(frames: tuple[list[Path], list[Path]]) -> SequenceStq:
    accumulator = SequenceAccumulator(KITTI_STEP_LABELS)
    for gt_png, pred_png in zip(*frames):
        gt_semantic, gt_instance = kitti_step.read_kitti_step_png(gt_png)
        pred_semantic, pred_instance = kitti_step.read_kitti_step_png(pred_png, expected_shape=gt_semantic.shape)
        accumulator.add_frame(gt_semantic, gt_instance, pred_semantic, pred_instance)
    return accumulator.result()


def evaluate_kitti_step(pred: Path, gt: Path, *, workers: int = 1, sequences: tuple[str, ...] | None = None) -> dict:
    """STQ, AQ and IoU of KITTI-STEP predictions (`<pred>/<seq>/<frame>.png`) against the ground truth
    (`<gt>/<seq>/<frame>.png`, e.g. `panoptic_maps/val`), over `sequences` (default: every folder in `gt`)."""
    gt_frames = kitti_step.read_kitti_step_gt(gt, sequences)
    pred_frames = kitti_step.kitti_step_prediction_paths(pred, gt_frames)
    names = list(gt_frames)
    results = parallel_map(_kitti_step_sequence, [(gt_frames[n], pred_frames[n]) for n in names], workers,
                           seconds=lambda frames: image_seconds(frames[0], KITTI_STEP_SECONDS_PER_PIXEL))
    return stq_result(results, names)


# ----------------------------------------------------------------------------------------------- VIPSeg


def vipseg_labels(categories: Mapping[int, Category]) -> StqLabels:
    """The VIPSeg STQ script's label space: 124 classes, things from the ground-truth categories, void 255."""
    unknown = [c for c in categories if not 0 <= c < VIPSEG_NUM_CLASSES]
    if unknown:
        raise ValueError(f"VIPSeg category ids must lie in [0, {VIPSEG_NUM_CLASSES}), got {unknown[:10]}")
    return StqLabels(VIPSEG_NUM_CLASSES, tuple(c.id for c in categories.values() if c.isthing), VIPSEG_VOID)


def vipseg_instance_numbers(frames: Sequence[Sequence[Segment]]) -> dict[int, int]:
    """Segment id -> instance number as the VIPSeg STQ script assigns them: 0, 1, 2, ... in order of first appearance
    in the video's JSON, stuff included. (So a thing listed first gets instance 0, which STQ treats as crowd when it
    is ground truth: a quirk of the official numbers, kept.)"""
    numbers: dict[int, int] = {}
    for segments in frames:
        for segment in segments:
            numbers.setdefault(segment.id, len(numbers))
    if len(numbers) > 1 << _INSTANCE_BITS:
        raise ValueError(f"{len(numbers)} segments in one video; the VIPSeg STQ encoding holds at most 65536")
    return numbers


def vipseg_semantic_instance(ids: np.ndarray, segments: Sequence[Segment],
                             numbers: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) segment ids of one frame -> (semantic, instance) maps as the VIPSeg STQ script builds them: pixels of
    the frame's listed segments get (category, instance number), all others (VOID, VOID)."""
    segment_ids = np.array(sorted(s.id for s in segments), dtype=np.int64)
    by_id = {s.id: s for s in segments}
    categories = np.array([by_id[i].category_id for i in segment_ids.tolist()] + [VIPSEG_VOID], np.int64)
    instances = np.array([numbers[i] for i in segment_ids.tolist()] + [VIPSEG_VOID], np.int64)
    position = np.searchsorted(segment_ids, ids)
    listed = segment_ids[np.minimum(position, len(segment_ids) - 1)] == ids if len(segment_ids) else np.zeros(
        ids.shape, bool)
    position = np.where(listed, position, len(segment_ids))
    return categories[position], instances[position]
