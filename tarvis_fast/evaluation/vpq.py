"""VPQ (video panoptic quality, Kim et al. 2020) for Cityscapes-VPS and VIPSeg (EVAL.md §3).

For each window of `nframes` consecutive annotated frames (every start 0..T-nframes of every video), ground-truth and
predicted segments are matched as tubes over the window: same category, not crowd, IoU > 0.5 where
IoU = |p∩g| / (|p| + |g| - |p∩g| - |p∩VOID|). Ground-truth areas are the JSON areas summed over the window; predicted
areas are pixel counts. An unmatched non-crowd ground truth is a FN; an unmatched prediction is a FP unless more than
half of it lies on VOID or on the crowd segment of its category (the last crowd segment listed in the window). TP, FP,
FN and the IoU sum gather per class over all windows of all videos; PQ = IoU-sum / (TP + FP/2 + FN/2) is averaged over
the classes with TP + FP + FN > 0 (All, Things, Stuff), x100. VPQ is the mean of that over the window sizes.

Speed: each frame is read once. Its pixels are turned into indices into the video's segment tables (searchsorted) and
one bincount gives the frame's (ground truth, prediction) intersection table; a window sums a few such small tables
instead of re-reading pixels. Videos run in parallel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tarvis_fast.evaluation import stq
from tarvis_fast.evaluation.parallel import image_seconds, parallel_map
from tarvis_fast.formats import panoptic
from tarvis_fast.formats.panoptic import Category, PanopticVideo, Segment

CITYSCAPES_VPS_WINDOWS = (1, 2, 3, 4)   # reported as k = 0, 5, 10, 15
VIPSEG_WINDOWS = (1, 2, 4, 6, 8)        # reported as k = 0, 5, 15, 25, 35
# CPU seconds per ground-truth pixel, for choosing between one process and a pool (parallel.py), measured on
# synthetic sets on a busy 2-core machine: 52 ns for Cityscapes-VPS (4 windows; 4 videos of 6 frames at 512x1024),
# 99 ns for VIPSeg (5 windows and STQ; 4 videos of 1-10 frames at 360x640). The larger one serves both.
SECONDS_PER_PIXEL = 1e-7


def window_label(nframes: int) -> str:
    """The official name of a window size: the evaluators write `vpq-{k}.txt` with k = (nframes - 1) * 5."""
    return f"vpq-{(nframes - 1) * 5}"


@dataclass
class PqCounts:
    """Per-class matching statistics, indexed like the category table."""

    tp: np.ndarray   # (C,) int64
    fp: np.ndarray   # (C,) int64
    fn: np.ndarray   # (C,) int64
    iou: np.ndarray  # (C,) float64: sum of matched IoUs

    @classmethod
    def zeros(cls, num_classes: int) -> PqCounts:
        return cls(*(np.zeros(num_classes, np.int64) for _ in range(3)), np.zeros(num_classes))

    def __iadd__(self, other: PqCounts) -> PqCounts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        return self


@dataclass(frozen=True)
class _FrameTables:
    """One frame in terms of the video's segment indices."""

    gt_index: np.ndarray      # (S,) json-order ground-truth segments of this frame
    gt_class: np.ndarray      # (S,)
    gt_crowd: np.ndarray      # (S,) bool
    gt_area: np.ndarray       # (S,) json areas
    pred_index: np.ndarray    # (R,) predicted segments of this frame
    pred_class: np.ndarray    # (R,)
    pred_area: np.ndarray     # (R,) pixel counts
    pair_key: np.ndarray      # (K,) gt index * (P + 1) + pred index, for every non-empty intersection
    pair_count: np.ndarray    # (K,)


def _index_map(ids: np.ndarray, table: np.ndarray, void_index: int, other_index: int) -> np.ndarray:
    """Pixel ids -> position in the sorted id `table`; VOID (0) -> void_index, ids not in the table -> other_index."""
    table = table.astype(ids.dtype)  # same dtype: searchsorted would otherwise convert every pixel
    position = np.searchsorted(table, ids)
    found = table[np.minimum(position, len(table) - 1)] == ids if len(table) else np.zeros(ids.shape, bool)
    return np.where(found, position, np.where(ids == panoptic.VOID_ID, void_index, other_index))


def _segment_arrays(segments: Sequence[Segment], table: np.ndarray,
                    class_index: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    index = np.searchsorted(table, [s.id for s in segments]).astype(np.int64)
    return index, np.array([class_index[s.category_id] for s in segments], np.int64)


def _read_video(gt: PanopticVideo, pred: PanopticVideo, categories: Mapping[int, Category],
                stq_accumulator: stq.SequenceAccumulator | None) -> tuple[list[_FrameTables], int, int]:
    """Read a video's frames once; returns per-frame tables and the numbers G, P of ground-truth and predicted
    segment ids in the video. Ground-truth index G is VOID, G + 1 any id the frame's JSON does not list; predicted
    index P is VOID."""
    class_index = {cat_id: i for i, cat_id in enumerate(categories)}
    gt_table = np.unique([s.id for f in gt.frames for s in f.segments]).astype(np.int64)
    pred_table = np.unique([s.id for f in pred.frames for s in f.segments]).astype(np.int64)
    n_gt, n_pred = len(gt_table), len(pred_table)
    if stq_accumulator is not None:
        gt_numbers = stq.vipseg_instance_numbers([f.segments for f in gt.frames])
        pred_numbers = stq.vipseg_instance_numbers([f.segments for f in pred.frames])
    frames = []
    for gt_frame, pred_frame in zip(gt.frames, pred.frames):
        gt_ids = panoptic.load_segment_ids(gt_frame, is_prediction=False)
        pred_ids = panoptic.load_segment_ids(pred_frame, expected_shape=gt_ids.shape, is_prediction=True)
        gt_pixel = _index_map(gt_ids, gt_table, n_gt, n_gt + 1)
        pred_pixel = _index_map(pred_ids, pred_table, n_pred, n_pred)
        counts = np.bincount((gt_pixel * (n_pred + 1) + pred_pixel).ravel(), minlength=(n_gt + 2) * (n_pred + 1))
        pair_key = np.flatnonzero(counts)
        gt_index, gt_class = _segment_arrays(gt_frame.segments, gt_table, class_index)
        pred_index, pred_class = _segment_arrays(pred_frame.segments, pred_table, class_index)
        pred_area = counts.reshape(n_gt + 2, n_pred + 1).sum(axis=0)[pred_index]
        frames.append(_FrameTables(
            gt_index, gt_class, np.array([s.iscrowd for s in gt_frame.segments], bool),
            np.array([s.area for s in gt_frame.segments], np.int64),
            pred_index, pred_class, pred_area, pair_key, counts[pair_key]))
        if stq_accumulator is not None:
            stq_accumulator.add_frame(*stq.vipseg_semantic_instance(gt_ids, gt_frame.segments, gt_numbers),
                                      *stq.vipseg_semantic_instance(pred_ids, pred_frame.segments, pred_numbers))
    return frames, n_gt, n_pred


def _window_segments(index: np.ndarray, area: np.ndarray, *attributes: np.ndarray):
    """Segments of a window: unique indices, their summed areas, the attributes of their first listing and the
    position of that listing (which orders them as the official evaluator's dict does)."""
    unique, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=area, minlength=len(unique))
    return unique, summed, first, *(a[first] for a in attributes)


def _window_counts(frames: Sequence[_FrameTables], n_gt: int, n_pred: int, num_classes: int) -> PqCounts:
    """Tube matching over the frames of one window."""
    cat = np.concatenate
    gt, gt_area, gt_order, gt_class, gt_crowd = _window_segments(
        cat([f.gt_index for f in frames]), cat([f.gt_area for f in frames]),
        cat([f.gt_class for f in frames]), cat([f.gt_crowd for f in frames]))
    pred, pred_area, _, pred_class = _window_segments(
        cat([f.pred_index for f in frames]), cat([f.pred_area for f in frames]), cat([f.pred_class for f in frames]))
    pair_key, inverse = np.unique(cat([f.pair_key for f in frames]), return_inverse=True)
    pair_count = np.bincount(inverse.ravel(), weights=cat([f.pair_count for f in frames]), minlength=len(pair_key))
    pair_gt, pair_pred = np.divmod(pair_key, n_pred + 1)

    # per predicted segment (window-local order): pixels on ground-truth VOID
    pred_slot = np.full(n_pred + 1, -1)
    pred_slot[pred] = np.arange(len(pred))
    on_void = (pair_gt == n_gt) & (pair_pred < n_pred)
    pred_void = np.zeros(len(pred))
    pred_void[pred_slot[pair_pred[on_void]]] = pair_count[on_void]

    gt_slot = np.full(n_gt + 2, -1)
    gt_slot[gt] = np.arange(len(gt))
    g, p = gt_slot[pair_gt], pred_slot[pair_pred]
    candidate = (g >= 0) & (p >= 0)
    g, p, intersection = g[candidate], p[candidate], pair_count[candidate]
    candidate = ~gt_crowd[g] & (gt_class[g] == pred_class[p])
    g, p, intersection = g[candidate], p[candidate], intersection[candidate]
    iou = intersection / (pred_area[p] + gt_area[g] - intersection - pred_void[p])
    if np.any(iou > 1):  # the official evaluator asserts this too
        raise panoptic.PanopticFormatError(
            f"ground-truth JSON area of a segment is smaller than its pixels in the window (IoU {iou.max():.3f} > 1)")
    match = iou > 0.5
    g, p, iou = g[match], p[match], iou[match]

    counts = PqCounts.zeros(num_classes)
    counts.tp += np.bincount(gt_class[g], minlength=num_classes)
    counts.iou += np.bincount(gt_class[g], weights=iou, minlength=num_classes)
    gt_matched = np.zeros(len(gt), bool)
    gt_matched[g] = True
    counts.fn += np.bincount(gt_class[~gt_matched & ~gt_crowd], minlength=num_classes)

    # the crowd segment each class keeps: the last one listed, as a dict filled in listing order keeps it
    crowd = np.flatnonzero(gt_crowd)
    crowd_of_class = {int(gt_class[c]): int(gt[c]) for c in crowd[np.argsort(gt_order[crowd], kind="stable")]}
    pred_matched = np.zeros(len(pred), bool)
    pred_matched[p] = True
    unmatched = np.flatnonzero(~pred_matched)
    ignored = pred_void[unmatched].copy()
    crowd_key = np.array([crowd_of_class.get(int(pred_class[u]), -1) for u in unmatched], np.int64)
    has_crowd = crowd_key >= 0
    crowd_key = crowd_key * (n_pred + 1) + pred[unmatched]
    position = np.minimum(np.searchsorted(pair_key, crowd_key), len(pair_key) - 1)  # a frame has >= 1 pixel
    found = has_crowd & (pair_key[position] == crowd_key)
    ignored[found] += pair_count[position[found]]
    false_positive = unmatched[ignored / pred_area[unmatched] <= 0.5]
    counts.fp += np.bincount(pred_class[false_positive], minlength=num_classes)
    return counts


@dataclass(frozen=True)
class _VideoJob:
    gt: PanopticVideo
    pred: PanopticVideo
    categories: Mapping[int, Category]
    windows: tuple[int, ...]
    with_stq: bool


def _video_stats(job: _VideoJob) -> tuple[dict[int, PqCounts], stq.SequenceStq | None]:
    accumulator = stq.SequenceAccumulator(stq.vipseg_labels(job.categories)) if job.with_stq else None
    frames, n_gt, n_pred = _read_video(job.gt, job.pred, job.categories, accumulator)
    stats = {}
    for nframes in job.windows:
        stats[nframes] = PqCounts.zeros(len(job.categories))
        for start in range(len(frames) - nframes + 1):  # a video shorter than the window adds nothing
            try:
                stats[nframes] += _window_counts(frames[start:start + nframes], n_gt, n_pred, len(job.categories))
            except panoptic.PanopticFormatError as err:
                window = ", ".join(f.name for f in job.gt.frames[start:start + nframes])
                raise panoptic.PanopticFormatError(f"video {job.gt.name}, frames {window}: {err}") from None
    return stats, accumulator.result() if accumulator is not None else None


def pq_summary(counts: PqCounts, categories: Mapping[int, Category]) -> dict:
    """All / Things / Stuff PQ, SQ, RQ (x100) and N, and the per-class table, as the official `vpq-{k}.txt` holds
    them. A group with no class having TP + FP + FN > 0 has PQ, SQ, RQ None (the official script divides by zero)."""
    denominator = counts.tp + 0.5 * counts.fp + 0.5 * counts.fn
    present = (counts.tp + counts.fp + counts.fn) > 0
    pq = np.where(present, counts.iou / np.where(present, denominator, 1), 0.0)
    sq = np.where(counts.tp > 0, counts.iou / np.maximum(counts.tp, 1), 0.0)
    rq = np.where(present, counts.tp / np.where(present, denominator, 1), 0.0)
    isthing = np.array([c.isthing for c in categories.values()], bool)
    summary: dict = {}
    for name, members in (("All", np.ones_like(isthing)), ("Things", isthing), ("Stuff", ~isthing)):
        chosen = members & present
        n = int(chosen.sum())
        summary[name] = {key: (100 * float(values[chosen].sum()) / n if n else None)
                         for key, values in (("PQ", pq), ("SQ", sq), ("RQ", rq))} | {"N": n}
    summary["per_class"] = [
        {"category_id": cat_id, "PQ": 100 * float(pq[i]), "SQ": 100 * float(sq[i]), "RQ": 100 * float(rq[i]),
         "IoU": float(counts.iou[i]), "TP": int(counts.tp[i]), "FP": int(counts.fp[i]), "FN": int(counts.fn[i])}
        for i, cat_id in enumerate(categories)]
    return summary


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def compute_vpq(gt: panoptic.PanopticDataset, pred: Sequence[PanopticVideo], windows: Sequence[int], *,
                workers: int = 1, with_stq: bool = False) -> tuple[dict, list[stq.SequenceStq]]:
    """VPQ of aligned ground-truth and predicted videos over the window sizes `windows`.

    Returns the statistics (`vpq_all`, `vpq_thing`, `vpq_stuff`: means over the windows, x100; one `vpq-{k}` summary
    per window) and, if `with_stq`, each video's VIPSeg-STQ counts.
    """
    jobs = [_VideoJob(g, p, gt.categories, tuple(windows), with_stq) for g, p in zip(gt.videos, pred)]
    per_video = parallel_map(_video_stats, jobs, workers, seconds=lambda job: image_seconds(
        [frame.png for frame in job.gt.frames], SECONDS_PER_PIXEL))
    result: dict = {}
    summaries = {}
    for nframes in windows:
        total = PqCounts.zeros(len(gt.categories))
        for video_stats, _ in per_video:
            total += video_stats[nframes]
        summaries[window_label(nframes)] = pq_summary(total, gt.categories)
    for key, group in (("vpq_all", "All"), ("vpq_thing", "Things"), ("vpq_stuff", "Stuff")):
        result[key] = _mean_or_none([s[group]["PQ"] for s in summaries.values()])
    result |= summaries
    return result, [sequence for _, sequence in per_video if sequence is not None]


def evaluate_cityscapes_vps(pred: Path, gt: Path, *, workers: int = 1) -> dict:
    """Cityscapes-VPS VPQ over k = 0, 5, 10, 15. `gt`: folder with `panpotic_gt_val_city_vps.json` and
    `panoptic_video/`; `pred`: folder with `pred.json` and `pan_pred/`."""
    dataset = panoptic.read_cityscapes_vps_gt(gt)
    predictions = panoptic.read_cityscapes_vps_predictions(pred, dataset)
    return compute_vpq(dataset, predictions, CITYSCAPES_VPS_WINDOWS, workers=workers)[0]


def evaluate_vipseg(pred: Path, gt: Path, *, workers: int = 1) -> dict:
    """VIPSeg VPQ over nframes 1, 2, 4, 6, 8 and the VIPSeg STQ variant (under "STQ"). `gt`: folder with
    `panoptic_gt_VIPSeg_val.json` and `panomasksRGB/`; `pred`: folder with `pred.json` and `pan_pred/`."""
    dataset = panoptic.read_vipseg_gt(gt)
    predictions = panoptic.read_vipseg_predictions(pred, dataset)
    result, sequences = compute_vpq(dataset, predictions, VIPSEG_WINDOWS, workers=workers, with_stq=True)
    result["STQ"] = stq.stq_result(sequences, [video.name for video in dataset.videos])
    return result
