"""DAVIS-2017 J&F: region similarity J and boundary accuracy F per object, with the numbers of the official
davis2017-evaluation toolkit (EVAL.md §2). Per sequence, each label map is scanned once per frame for all objects
(areas, and one label boundary split among the ids), boundaries are matched as sorted pixel keys over all frames
at once, and sequences run in a process pool when there is enough work.

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

from tarvis_fast.evaluation.parallel import image_seconds, parallel_map
from tarvis_fast.formats.davis import TASKS, VOID_ID, read_annotations, read_results, read_split

BOUNDARY_FRACTION = 0.008  # of the image diagonal
MAX_PROPOSALS = 20  # result ids allowed per sequence in the unsupervised task
# CPU seconds per result pixel (reading it and the ground truth, J and F), for choosing between one process
# and a pool: 4.7 s of CPU for 30 sequences of 49 frames at 854x480 on a busy 2-core machine.
SECONDS_PER_PIXEL = 8e-9
STATISTICS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundaries of binary masks or label maps (..., H, W) -> bool (..., H, W).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour. In the
    last row only the right neighbour is compared, in the last column only the lower one, and the
    bottom-right pixel is never on the boundary (the Berkeley `seg2bmap` convention DAVIS uses: the
    boundary sits half a pixel towards the origin from the contour). For a label map the result is the
    union of the boundaries of the masks of its ids.

    Two comparisons suffice: a pixel differs from its lower-right neighbour only when it differs from
    its right neighbour or that one differs from the pixel below it, so a pixel is on the boundary
    when it differs from its right neighbour, or it or its right neighbour differs from the pixel below.
    """
    edges = np.empty(labels.shape, bool)
    np.not_equal(labels[..., :, :-1], labels[..., :, 1:], out=edges[..., :, :-1])
    edges[..., :, -1] = False
    differs_below = labels[..., :-1, :] != labels[..., 1:, :]
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


# The functions below work frame by frame: a frame's temporaries stay in the CPU cache, which made them
# about 3x faster than the same operations on whole (T, H, W) stacks (50 frames at 480p).

def boundary_pixels(labels: np.ndarray, n_ids: int, radius: int) -> list[_BoundaryPixels]:
    """The boundary pixels of the mask of each id 1..n_ids in a label stack (T, H, W).

    A pixel is on the boundary of id k's mask exactly when its block (itself and the neighbours
    boundary_map compares it with) holds more than one id and k is among them: if the pixel holds k,
    some neighbour differs from it, and if a neighbour holds k, the pixel does not. So each frame's
    label boundary is computed once, and each of its pixels is given to the ids of its block.
    """
    n_frames, height, width = labels.shape
    padded_width = width + 2 * radius
    keys, frames, blocks = [], [], []
    for t, frame in enumerate(labels):
        flat = np.flatnonzero(boundary_map(frame))
        row, col = np.divmod(flat, width)
        # In the last column (row) the block's right (lower) neighbour is the pixel itself, which adds no
        # id, as boundary_map compares nothing there.
        step_right = (col < width - 1).view(np.uint8)
        step_down = np.where(row < height - 1, width, 0)
        pixels = frame.reshape(-1)
        blocks.append(np.stack([pixels[flat], pixels[flat + step_right], pixels[flat + step_down],
                                pixels[flat + step_down + step_right]]))
        keys.append((t * (height + 2 * radius) + row + radius) * padded_width + col + radius)
        frames.append(np.full(flat.size, t))
    all_keys, all_frames, block = np.concatenate(keys), np.concatenate(frames), np.concatenate(blocks, axis=1)
    result = []
    for k in range(1, n_ids + 1):
        on_boundary = (block == k).any(axis=0)
        result.append(_BoundaryPixels(all_keys[on_boundary], all_frames[on_boundary], n_frames, padded_width,
                                      radius))
    return result


def _areas(labels: np.ndarray, n_ids: int) -> np.ndarray:
    """(n_ids, T): the pixels of each id 1..n_ids in each frame of a label stack (T, H, W)."""
    areas = np.zeros((n_ids, len(labels)), np.int64)
    for t, frame in enumerate(labels):
        for k in range(1, n_ids + 1):
            areas[k - 1, t] = np.count_nonzero(frame == k)
    return areas


def _intersections(labels: np.ndarray, k: int, other: np.ndarray, g: int) -> np.ndarray:
    """(T,): per frame, the pixels of id k in `labels` that hold id g in `other` (both (T, H, W))."""
    return np.fromiter((np.count_nonzero((a == k) & (b == g)) for a, b in zip(labels, other)), np.int64, len(labels))


@dataclass(frozen=True)
class _Objects:
    """The masks of ids 1..n in a label stack, with the per-frame areas and boundary pixels that J and F use."""

    labels: np.ndarray  # (T, H, W) ids, 0 = background
    areas: np.ndarray  # (n, T): areas[k - 1] are the pixels of id k per frame
    boundaries: list[_BoundaryPixels]  # boundaries[k - 1]: those of id k

    @classmethod
    def of(cls, labels: np.ndarray, n_ids: int, radius: int) -> "_Objects":
        return cls(labels, _areas(labels, n_ids), boundary_pixels(labels, n_ids, radius))


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


def _pair_scores(results: _Objects, k: int, truths: _Objects, g: int) -> tuple[np.ndarray, np.ndarray]:
    """(J, F) per frame, each (T,) float64, of result id k against ground-truth object g."""
    intersection = _intersections(results.labels, k, truths.labels, g)
    union = results.areas[k - 1] + truths.areas[g - 1] - intersection
    jaccard = np.divide(intersection, union, out=np.ones(union.shape), where=union > 0)
    result, truth = results.boundaries[k - 1], truths.boundaries[g - 1]
    boundary_f = _f_measure(result.count_near(truth), result.per_frame(), truth.count_near(result), truth.per_frame())
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


def _estimated_seconds(job: _SequenceJob) -> float:
    """What _evaluate_sequence(job) takes, from the number and size of the sequence's result PNGs."""
    return image_seconds(list((job.results / job.sequence).glob("*.png")), SECONDS_PER_PIXEL)


def _evaluate_sequence(job: _SequenceJob) -> list[tuple[str, tuple[float, ...]]]:
    """[(f"{sequence}_{i}", (J mean, recall, decay, F mean, recall, decay)) per object]."""
    frame_names, gt = read_annotations(job.root, job.sequence, task=job.task, resolution=job.resolution)
    first = gt[0]
    n_objects = int(first.max(initial=0, where=first != VOID_ID))
    void = gt == VOID_ID if job.task == "unsupervised" else None
    gt[gt > n_objects] = 0  # void counts as background; ids absent from the first frame are not objects
    if job.task == "semi-supervised":
        if len(frame_names) < 3:
            raise ValueError(f"sequence {job.sequence}: {len(frame_names)} frames; the semi-supervised task needs "
                             "at least 3 (the first and last are not evaluated)")
        frame_names, gt, max_id = frame_names[1:-1], gt[1:-1], n_objects
    else:
        max_id = MAX_PROPOSALS
    pred = read_results(job.results, job.sequence, frame_names, shape=gt.shape[1:], max_id=max_id)
    radius = boundary_radius(*gt.shape[1:])
    truths = _Objects.of(gt, n_objects, radius)
    if job.task == "semi-supervised":
        results = _Objects.of(pred, n_objects, radius)
        scores = [_pair_scores(results, k, truths, k) for k in range(1, n_objects + 1)]
    else:
        # Every result id, zero-padded up to the number of objects, against every object; then the
        # one-to-one assignment with the best total (J + F) / 2. Void pixels are ignored: they are taken out
        # of the result masks (the ground truth has none left), after the ids are counted, as the toolkit does.
        from scipy.optimize import linear_sum_assignment  # costs ~0.4 s of start-up; only this task needs it

        n_results = max(n_objects, int(pred.max(initial=0)))
        pred[void] = 0
        results = _Objects.of(pred, n_results, radius)
        table = [[_pair_scores(results, k, truths, g) for g in range(1, n_objects + 1)]
                 for k in range(1, n_results + 1)]
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
    per_sequence = parallel_map(_evaluate_sequence, jobs, workers, seconds=_estimated_seconds)
    objects = [obj for sequence in per_sequence for obj in sequence]
    if not objects:
        raise ValueError(f"{gt}: no objects in the first annotated frame of any {subset} sequence")
    # One contiguous row per statistic, so that each mean sums like the toolkit's np.mean over a list.
    per_object = np.array([stats for _, stats in objects]).T.copy()
    j_mean, j_recall, j_decay, f_mean, f_recall, f_decay = per_object.mean(axis=1)
    values = ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
    summary: dict = {name: float(value) for name, value in zip(STATISTICS, values)}
    summary["per_sequence"] = {name: {"J-Mean": stats[0], "F-Mean": stats[3]} for name, stats in objects}
    return summary
