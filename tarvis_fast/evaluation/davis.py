"""DAVIS-2017 J&F: region similarity J and boundary accuracy F per object, with the numbers of the official
davis2017-evaluation toolkit (EVAL.md §2), vectorised over the frames of a sequence and parallel over sequences.

Per object and frame, J is the IoU of the result and ground-truth masks (1 when both are empty), and F the
F-measure of their 1-pixel boundaries, where a boundary pixel counts as matched when a boundary pixel of
the other mask lies within a disk of radius ceil(0.008 * image diagonal). Per object: Mean, Recall (the
fraction of frames above 0.5) and Decay (mean of the first quarter of the frames minus mean of the last).
The global numbers average over all objects of all sequences, on the 0-1 scale the toolkit prints.

Semi-supervised (TarViS' task): the first and last frames are left out, void (255) counts as background,
result ids above the number of objects in the first ground-truth frame are an error. Unsupervised: all
frames, void pixels are ignored, up to 20 result ids are matched to the objects by the Hungarian method on
(J + F) / 2.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from tarvis_fast.evaluation.parallel import parallel_map
from tarvis_fast.formats.davis import TASKS, VOID_ID, read_annotations, read_results, read_split

BOUNDARY_FRACTION = 0.008  # of the image diagonal
MAX_PROPOSALS = 20  # result ids allowed per sequence in the unsupervised task
STATISTICS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundaries of binary masks (..., H, W) -> bool (..., H, W).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour. In the
    last row only the right neighbour is compared, in the last column only the lower one, and the
    bottom-right pixel is never on the boundary (the Berkeley `seg2bmap` convention DAVIS uses: the
    boundary sits half a pixel towards the origin from the contour).
    """
    m = masks.astype(bool, copy=False)
    edges = np.zeros_like(m)
    top_left = m[..., :-1, :-1]
    edges[..., :-1, :-1] = (top_left != m[..., :-1, 1:]) | (top_left != m[..., 1:, :-1]) | (top_left != m[..., 1:, 1:])
    edges[..., -1, :-1] = m[..., -1, :-1] != m[..., -1, 1:]
    edges[..., :-1, -1] = m[..., :-1, -1] != m[..., 1:, -1]
    return edges


def boundary_radius(height: int, width: int) -> int:
    """Matching tolerance in pixels: ceil(0.008 * diagonal), computed as the toolkit does (8 at 480p)."""
    return int(np.ceil(BOUNDARY_FRACTION * np.linalg.norm((height, width))))


def disk_rows(radius: int) -> list[tuple[int, int]]:
    """The digital disk {(dx, dy): dx² + dy² <= radius²} as rows: (dy, half width) for dy = -radius..radius."""
    return [(dy, math.isqrt(radius * radius - dy * dy)) for dy in range(-radius, radius + 1)]


@dataclass(frozen=True)
class _BoundaryPixels:
    """The boundary pixels of one object in a stack of T frames, as sorted integer keys of their position in
    the stack padded by `radius` zero pixels on every side, so that a disk around any pixel stays inside
    its own frame and row runs of the disk are contiguous key ranges."""

    keys: np.ndarray  # (n,) int64, ascending
    frames: np.ndarray  # (n,) frame index of each key
    n_frames: int
    padded_width: int  # key step from one row to the next
    radius: int

    @classmethod
    def of(cls, boundaries: np.ndarray, radius: int) -> "_BoundaryPixels":
        """boundaries: bool (T, H, W)."""
        n_frames, height, width = boundaries.shape
        frame, within_frame = np.divmod(np.flatnonzero(boundaries), height * width)
        row, col = np.divmod(within_frame, width)
        padded_width = width + 2 * radius
        keys = (frame * (height + 2 * radius) + row + radius) * padded_width + col + radius
        return cls(keys, frame, n_frames, padded_width, radius)

    def per_frame(self) -> np.ndarray:
        """Number of boundary pixels per frame (T,)."""
        return np.bincount(self.frames, minlength=self.n_frames)

    def count_near(self, reference: "_BoundaryPixels") -> np.ndarray:
        """Per frame (T,), the number of these pixels within the disk of radius r of some `reference` pixel of
        the same frame: |self ∩ dilate(reference, disk(r))|. Each disk row is a run of keys
        [key + dy·padded_width - half, key + dy·padded_width + half]; it holds a reference pixel when the
        first reference key at or after the run's start is not past its end."""
        sentinel = np.iinfo(np.int64).max  # "no reference key after this point"
        reference_keys = np.append(reference.keys, sentinel)
        near = np.zeros(self.keys.shape, bool)
        for dy, half in disk_rows(self.radius):
            run_start = self.keys + (dy * self.padded_width - half)
            near |= reference_keys[np.searchsorted(reference_keys, run_start)] <= run_start + 2 * half
        return np.bincount(self.frames[near], minlength=self.n_frames)


def _region_similarity(gt: np.ndarray, pred: np.ndarray, n_gt: int, n_pred: int, valid: np.ndarray | None) -> np.ndarray:
    """J for every (result id, ground-truth id) pair and frame -> (n_pred, n_gt, T) float64.

    gt, pred: (T, H, W) ids in 0..n_gt and 0..n_pred; valid: bool (T, H, W) or None (all pixels count).
    One bincount over combined (frame, gt id, result id) codes gives every intersection and area.
    """
    n_frames = gt.shape[0]
    codes = gt.astype(np.int64) * (n_pred + 1) + pred
    codes += (np.arange(n_frames) * ((n_gt + 1) * (n_pred + 1)))[:, None, None]
    codes = codes.reshape(-1) if valid is None else codes[valid]
    confusion = np.bincount(codes, minlength=n_frames * (n_gt + 1) * (n_pred + 1)).reshape(n_frames, n_gt + 1, n_pred + 1)
    intersection = confusion[:, 1:, 1:]
    gt_area = confusion[:, 1:, :].sum(axis=2)
    pred_area = confusion[:, :, 1:].sum(axis=1)
    union = gt_area[:, :, None] + pred_area[:, None, :] - intersection
    jaccard = np.divide(intersection, union, out=np.ones(union.shape), where=union > 0)
    return jaccard.transpose(2, 1, 0)


def _f_measure(fg_matched: np.ndarray, n_fg: np.ndarray, gt_matched: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """Boundary F per frame from matched and total boundary pixel counts (all (T,) int).

    Precision = fg_matched / n_fg, recall = gt_matched / n_gt, each 1 when its boundary is empty. (The
    toolkit's other empty cases follow: with no ground-truth boundary nothing is matched, so precision
    is 0, and likewise recall with no result boundary.) F = 0 when precision + recall = 0.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_fg > 0, fg_matched / n_fg, 1.0)
        recall = np.where(n_gt > 0, gt_matched / n_gt, 1.0)
        total = precision + recall
        return np.where(total > 0, 2 * precision * recall / total, 0.0)


def _boundary_f(gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None,
                pairs: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    """F per frame (T,) for each (result id, ground-truth id) pair; gt, pred, valid as in `_region_similarity`."""
    radius = boundary_radius(*gt.shape[1:])

    def boundary_pixels(labels: np.ndarray, object_id: int) -> _BoundaryPixels:
        mask = labels == object_id
        if valid is not None:
            mask &= valid
        return _BoundaryPixels.of(boundary_map(mask), radius)

    pred_pixels = {p: boundary_pixels(pred, p) for p in sorted({p for p, _ in pairs})}
    gt_pixels = {g: boundary_pixels(gt, g) for g in sorted({g for _, g in pairs})}
    scores = {}
    for p, g in pairs:
        fg, truth = pred_pixels[p], gt_pixels[g]
        scores[p, g] = _f_measure(fg.count_near(truth), fg.per_frame(), truth.count_near(fg), truth.per_frame())
    return scores


def object_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F (T,).

    Decay: the frames are cut into 4 bins at round(linspace(1, T, 5)) - 1 (neighbouring bins share their
    edge frame); decay = mean of bin 0 - mean of bin 3. The toolkit casts the edges to uint8, so they
    wrap modulo 256 for sequences longer than 256 frames; that is kept for identical numbers.
    """
    edges = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(np.int64) % 256
    bins = [per_frame[edges[i]:edges[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # empty bins give NaN, as in the toolkit
        return (float(np.nanmean(per_frame)), float(np.nanmean(per_frame > 0.5)),
                float(np.nanmean(bins[0]) - np.nanmean(bins[3])))


@dataclass(frozen=True)
class _SequenceJob:
    results: Path
    root: Path
    sequence: str
    task: str
    resolution: str


def _evaluate_sequence(job: _SequenceJob) -> list[tuple[str, tuple[float, ...]]]:
    """[(f"{sequence}_{i}", (J mean, recall, decay, F mean, recall, decay)) per object]."""
    frame_names, gt = read_annotations(job.root, job.sequence, task=job.task, resolution=job.resolution)
    void = gt == VOID_ID
    gt[void] = 0
    n_objects = int(gt[0].max())
    gt[gt > n_objects] = 0  # ids absent from the first frame are not objects
    if job.task == "semi-supervised":
        if len(frame_names) < 3:
            raise ValueError(f"sequence {job.sequence}: {len(frame_names)} frames; the semi-supervised task needs "
                             "at least 3 (the first and last are not evaluated)")
        frame_names, gt, valid, max_id = frame_names[1:-1], gt[1:-1], None, n_objects
    else:
        valid, max_id = ~void, MAX_PROPOSALS
    pred = read_results(job.results, job.sequence, frame_names, shape=gt.shape[1:], max_id=max_id)
    n_pred = max(n_objects, int(pred.max(initial=0)))

    jaccard = _region_similarity(gt, pred, n_objects, n_pred, valid)
    if job.task == "semi-supervised":
        pairs = [(k, k) for k in range(1, n_objects + 1)]
        boundary = _boundary_f(gt, pred, valid, pairs)
    else:
        all_pairs = [(p, g) for p in range(1, n_pred + 1) for g in range(1, n_objects + 1)]
        boundary = _boundary_f(gt, pred, valid, all_pairs)
        f_mean = np.array([[boundary[p, g].mean() for g in range(1, n_objects + 1)] for p in range(1, n_pred + 1)])
        rows, cols = linear_sum_assignment(-(jaccard.mean(axis=2) + f_mean.reshape(n_pred, n_objects)) / 2)
        pairs = [(int(p) + 1, int(g) + 1) for p, g in zip(rows, cols)]
    return [(f"{job.sequence}_{i}", object_statistics(jaccard[p - 1, g - 1]) + object_statistics(boundary[p, g]))
            for i, (p, g) in enumerate(pairs, 1)]


def evaluate_davis(pred: Path, gt: Path, *, workers: int = 1, task: str = "semi-supervised",
                   subset: str = "val", resolution: str = "480p") -> dict:
    """J&F of the result folder `pred` (<pred>/<sequence>/<frame>.png) against the DAVIS-2017 root `gt`.

    Returns {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay": float,
    "per_sequence": {"<sequence>_<object>": {"J-Mean": float, "F-Mean": float}}}, on the 0-1 scale.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    jobs = [_SequenceJob(Path(pred), Path(gt), sequence, task, resolution) for sequence in read_split(gt, subset)]
    objects = [obj for sequence in parallel_map(_evaluate_sequence, jobs, workers) for obj in sequence]
    if not objects:
        raise ValueError(f"{gt}: no objects in the first annotated frame of any {subset} sequence")
    j_mean, j_recall, j_decay, f_mean, f_recall, f_decay = np.mean([stats for _, stats in objects], axis=0)
    values = ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
    summary: dict = {name: float(value) for name, value in zip(STATISTICS, values)}
    summary["per_sequence"] = {name: {"J-Mean": stats[0], "F-Mean": stats[3]} for name, stats in objects}
    return summary
