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

    Two comparisons suffice: a pixel differs from its lower-right neighbour exactly when it differs
    from its right neighbour or that one differs from the pixel below it, so a pixel is on the
    boundary when it differs from its right neighbour, or it or its right neighbour differs from the
    pixel below.
    """
    m = masks.astype(bool, copy=False)
    edges = np.empty_like(m)
    np.not_equal(m[..., :, :-1], m[..., :, 1:], out=edges[..., :, :-1])
    edges[..., :, -1] = False
    differs_below = m[..., :-1, :] != m[..., 1:, :]
    edges[..., :-1, :] |= differs_below
    edges[..., :-1, :-1] |= differs_below[..., :, 1:]
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
    def of(cls, masks: np.ndarray, radius: int) -> "_BoundaryPixels":
        """Boundary pixels of bool masks (T, H, W).

        The boundary map is only computed in the frames where the masks have pixels, on their bounding
        box over those frames, grown by one pixel up and left (a boundary pixel can sit just outside the
        mask there) and by one empty row and column down and right (so that the box's last row and
        column follow the rules of inner pixels, as they do in the full image, unless the box reaches
        the image's edge).
        """
        n_frames, height, width = masks.shape
        padded_width = width + 2 * radius
        present = np.flatnonzero(masks.reshape(n_frames, -1).any(axis=1))
        if present.size == 0:
            nothing = np.zeros(0, np.int64)
            return cls(nothing, nothing, n_frames, padded_width, radius)
        footprint = masks.any(axis=0)
        rows, cols = np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0))
        top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, height)
        left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, width)
        box = masks[present, top:bottom, left:right]
        index, within_box = np.divmod(np.flatnonzero(boundary_map(box)), (bottom - top) * (right - left))
        row, col = np.divmod(within_box, right - left)
        frame = present[index]
        keys = (frame * (height + 2 * radius) + top + row + radius) * padded_width + left + col + radius
        return cls(keys, frame, n_frames, padded_width, radius)

    def per_frame(self) -> np.ndarray:
        """Number of boundary pixels per frame (T,)."""
        return np.bincount(self.frames, minlength=self.n_frames)

    def count_near(self, reference: "_BoundaryPixels") -> np.ndarray:
        """Per frame (T,), the number of these pixels within the disk of radius r of some `reference` pixel of
        the same frame: |self ∩ dilate(reference, disk(r))|. Each disk row is a run of keys
        [key + dy·padded_width - half, key + dy·padded_width + half]; it holds a reference pixel when the
        first reference key at or after the run's start is not past its end. Rows are tried nearest first,
        each only for the pixels not yet found near."""
        sentinel = np.iinfo(np.int64).max  # "no reference key after this point"
        reference_keys = np.append(reference.keys, sentinel)
        near = np.zeros(self.n_frames, np.int64)
        # First drop the pixels with no reference key anywhere in the rows y - r .. y + r around them.
        reach = self.radius * self.padded_width + self.radius
        first_in_reach = reference_keys[np.searchsorted(reference_keys, self.keys - reach)]
        pending = np.flatnonzero(first_in_reach <= self.keys + reach)
        for dy, half in sorted(disk_rows(self.radius), key=lambda row: abs(row[0])):
            if pending.size == 0:
                break
            run_start = self.keys[pending] + (dy * self.padded_width - half)
            found = reference_keys[np.searchsorted(reference_keys, run_start)] <= run_start + 2 * half
            near += np.bincount(self.frames[pending[found]], minlength=self.n_frames)
            pending = pending[~found]
        return near


def _count_per_frame(masks: np.ndarray) -> np.ndarray:
    """Pixels set in each frame of bool masks (T, H, W) -> (T,) int64."""
    return masks.reshape(len(masks), -1).view(np.uint8).sum(axis=1, dtype=np.uint32).astype(np.int64)


@dataclass(frozen=True)
class _ObjectMasks:
    """One object's masks in all frames, with the per-frame areas and boundary pixels that J and F use."""

    masks: np.ndarray  # bool (T, H, W)
    area: np.ndarray  # (T,)
    boundary: _BoundaryPixels

    @classmethod
    def of(cls, labels: np.ndarray, object_id: int, valid: np.ndarray | None, radius: int) -> "_ObjectMasks":
        """labels: (T, H, W) ids; valid: bool (T, H, W), or None when every pixel counts."""
        masks = labels == object_id
        if valid is not None:
            masks &= valid
        return cls(masks, _count_per_frame(masks), _BoundaryPixels.of(masks, radius))


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


def _pair_scores(result: _ObjectMasks, truth: _ObjectMasks) -> tuple[np.ndarray, np.ndarray]:
    """(J, F) per frame, each (T,) float64, of a result object against a ground-truth object."""
    intersection = _count_per_frame(result.masks & truth.masks)
    union = result.area + truth.area - intersection
    jaccard = np.divide(intersection, union, out=np.ones(union.shape), where=union > 0)
    boundary_f = _f_measure(result.boundary.count_near(truth.boundary), result.boundary.per_frame(),
                            truth.boundary.count_near(result.boundary), truth.boundary.per_frame())
    return jaccard, boundary_f


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
    """What a worker needs to evaluate one sequence."""

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
    radius = boundary_radius(*gt.shape[1:])
    truths = [_ObjectMasks.of(gt, g, valid, radius) for g in range(1, n_objects + 1)]
    if job.task == "semi-supervised":
        scores = [_pair_scores(_ObjectMasks.of(pred, k, valid, radius), truth) for k, truth in enumerate(truths, 1)]
    else:
        # Every result id, zero-padded up to the number of objects, against every object; then the
        # one-to-one assignment with the best total (J + F) / 2.
        n_results = max(n_objects, int(pred.max(initial=0)))
        table = []
        for p in range(1, n_results + 1):
            result = _ObjectMasks.of(pred, p, valid, radius)
            table.append([_pair_scores(result, truth) for truth in truths])
        mean_scores = np.array([[(j.mean() + f.mean()) / 2 for j, f in row] for row in table])
        rows, cols = linear_sum_assignment(-mean_scores.reshape(n_results, n_objects))
        scores = [table[r][c] for r, c in zip(rows, cols)]
    return [(f"{job.sequence}_{i}", object_statistics(j) + object_statistics(f)) for i, (j, f) in enumerate(scores, 1)]


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
    # One contiguous row per statistic, so that each mean sums like the toolkit's np.mean over a list.
    per_object = np.array([stats for _, stats in objects]).T.copy()
    j_mean, j_recall, j_decay, f_mean, f_recall, f_decay = per_object.mean(axis=1)
    values = ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
    summary: dict = {name: float(value) for name, value in zip(STATISTICS, values)}
    summary["per_sequence"] = {name: {"J-Mean": stats[0], "F-Mean": stats[3]} for name, stats in objects}
    return summary
