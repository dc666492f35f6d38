"""YouTube-VIS 2021 and OVIS video mAP, with the numbers of the official YTVOSeval / OVISeval (EVAL.md §1).

COCO-style mAP where the unit is a track over a whole video. The IoU of a predicted and a ground-truth track
is Σ_t |d ∩ g| / Σ_t |d ∪ g| over the frames; a track's area is the mean of its non-zero per-frame areas.
Per (video, category) the detections, best score first (at most 100), are matched greedily to ground truths
at IoU thresholds 0.50:0.05:0.95; crowd ground truths and those outside the area (or OVIS occlusion) range
are ignored, as are unmatched detections outside the area range. Precision at 101 recall points, averaged
over categories that have ground truth, gives AP; the final recall gives AR. Statistics are on the 0-1 scale
the tools print; -1 where no category has ground truth in the range.

The names of the statistics, and the line of the official summary each one is:
    AP    Average Precision (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]
    AP50, AP75: IoU=0.50, 0.75;  APs, APm, APl: area= small, medium, large (0-128², 128²-256², 256²-)
    AR1, AR10, AR100  Average Recall (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=1, 10, 100 ]
    ARs, ARm, ARl: area= small, medium, large
    OVIS adds APso, APmo, APho and ARso, ARmo, ARho: occ= light, medium, heavy, i.e. an occlusion score
    (mean of the top half of the per-frame levels no 0, slight .25, severe .75) in 0-.25, .25-.5, .5-1.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_api

from tarvis_fast.evaluation.parallel import parallel_map
from tarvis_fast.formats.rle import RLE
from tarvis_fast.formats.ytvis import GroundTruthTrack, PredictedTrack, read_ground_truth, read_results

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
# CPU seconds per frame and (detection, ground truth) pair, single track included, of a video, for choosing
# between one process and a pool (parallel.py): 21 us on the synthetic set of the tests (10 videos of 3-7
# frames, 0-4 tracks, 0-3 detections per track) on a busy 2-core machine.
SECONDS_PER_FRAME_AND_PAIR = 2e-5
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 128.0**2), "medium": (128.0**2, 256.0**2), "large": (256.0**2, 1e10)}
OCCLUSION_RANGES = {"all": (0.0, 1.0), "light": (0.0, 0.25), "medium": (0.25, 0.5), "heavy": (0.5, 1.0)}
OCCLUSION_SCORES = {"no_occlusion": 0.0, "slight_occlusion": 0.25, "severe_occlusion": 0.75}


@dataclass(frozen=True)
class Statistic:
    name: str
    precision: bool  # AP if True, AR if False
    iou: float | None  # one IoU threshold, or None for the mean over all ten
    area: str = "all"
    occlusion: str = "all"
    max_detections: int = 100


_AREA_SUFFIXES = {"s": "small", "m": "medium", "l": "large"}
_OCCLUSION_SUFFIXES = {"so": "light", "mo": "medium", "ho": "heavy"}


def _statistics(occlusion: bool) -> tuple[Statistic, ...]:
    """The statistics in the order the official summarize() prints them."""
    def group(precision: bool) -> list[Statistic]:
        kind = "AP" if precision else "AR"
        if precision:
            head = [Statistic("AP", True, None), Statistic("AP50", True, 0.5), Statistic("AP75", True, 0.75)]
        else:
            head = [Statistic(f"AR{n}", False, None, max_detections=n) for n in MAX_DETECTIONS]
        sizes = [Statistic(kind + suffix, precision, None, area=area) for suffix, area in _AREA_SUFFIXES.items()]
        levels = [Statistic(kind + suffix, precision, None, occlusion=occ) for suffix, occ in _OCCLUSION_SUFFIXES.items()]
        return head + sizes + (levels if occlusion else [])
    return (*group(True), *group(False))


YTVIS_STATISTICS = _statistics(occlusion=False)
OVIS_STATISTICS = _statistics(occlusion=True)


def mean_nonzero_area(areas: list) -> float:
    """A track's area: the mean of its per-frame areas that are neither 0 nor None (0 if there are none)."""
    present = [a for a in areas if a]
    return float(np.array(present).mean()) if present else 0.0


def occlusion_score(levels: list[str | None]) -> float:
    """OVIS occlusion score: the mean of the highest ceil(n/2) of the n per-frame level scores."""
    scores = sorted(OCCLUSION_SCORES[level] for level in levels if level is not None)
    top = scores[-math.ceil(len(scores) / 2):]
    return sum(top) / len(top)


def frame_areas(tracks: list[list[RLE | None]], n_frames: int) -> np.ndarray:
    """Mask area of each track in each frame -> (N, T) float64; 0 where a track has no mask."""
    areas = np.zeros((len(tracks), n_frames))
    for t in range(n_frames):
        present = [i for i, track in enumerate(tracks) if track[t] is not None]
        if present:
            areas[present, t] = mask_api.area([tracks[i][t] for i in present])
    return areas


def video_iou(detections: list[list[RLE | None]], ground_truths: list[list[RLE | None]],
              det_areas: np.ndarray, gt_areas: np.ndarray) -> np.ndarray:
    """Track IoU Σ_t |d ∩ g| / Σ_t |d ∪ g| for every (detection, ground truth) pair -> (D, G) float64.

    detections, ground_truths: per track, per frame a compressed RLE or None (no mask); det_areas (D, T)
    and gt_areas (G, T) their `frame_areas`. A frame where only one of the two has a mask adds its area to
    the union; a zero union gives IoU 0. Intersections come from pycocotools' IoU of all pairs of a frame
    at once: |d ∩ g| = iou · (|d| + |g|) / (1 + iou), rounded to the integer it is.
    """
    intersection = np.zeros((len(detections), len(ground_truths)))
    for t in range(det_areas.shape[1]):
        d_index = [i for i, track in enumerate(detections) if track[t] is not None]
        g_index = [j for j, track in enumerate(ground_truths) if track[t] is not None]
        if d_index and g_index:
            iou = np.asarray(mask_api.iou([detections[i][t] for i in d_index], [ground_truths[j][t] for j in g_index],
                                          [0] * len(g_index))).reshape(len(d_index), len(g_index))
            area_sum = det_areas[d_index, t][:, None] + gt_areas[g_index, t][None, :]
            intersection[np.ix_(d_index, g_index)] += np.rint(iou * area_sum / (1 + iou))
    union = det_areas.sum(axis=1)[:, None] + gt_areas.sum(axis=1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def greedy_match(ious: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """COCO matching at each IoU threshold -> (T, D) index of the matched ground truth, -1 if none.

    ious: (D, G), detections best score first; gt_ignored, gt_crowd: bool (G,), regular ground truths first.
    Each detection in turn takes the available ground truth (not yet matched, or crowd) of highest IoU, if
    at least the threshold; a regular ground truth is preferred over any ignored one; among equal IoUs the
    last one wins (as in the official loop, which keeps a new candidate when its IoU is >= the best so far).
    """
    n_det, n_gt = ious.shape
    n_thresholds = len(IOU_THRESHOLDS)
    match = np.full((n_thresholds, n_det), -1)
    if n_gt == 0:
        return match
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    taken = np.zeros((n_thresholds, n_gt), bool)
    rows = np.arange(n_thresholds)
    for d in range(n_det):
        candidates = (~taken | gt_crowd) & (ious[d] >= thresholds)
        regular = candidates & ~gt_ignored
        pool = np.where(regular.any(axis=1, keepdims=True), regular, candidates)
        scored = np.where(pool, ious[d], -np.inf)
        last_best = n_gt - 1 - np.argmax(scored[:, ::-1] == scored.max(axis=1, keepdims=True), axis=1)
        found = pool.any(axis=1)
        match[found, d] = last_best[found]
        taken[rows[found], last_best[found]] = True
    return match


@dataclass(frozen=True)
class _Range:
    """One evaluation subset: an area range and an occlusion range (None: occlusion not used)."""

    area: tuple[float, float]
    occlusion: tuple[float, float] | None


@dataclass(frozen=True)
class _VideoJob:
    """What a worker needs to evaluate one video: its tracks (in file order) and the ranges."""

    n_frames: int
    ground_truths: list[GroundTruthTrack]
    detections: list[PredictedTrack]
    ranges: list[_Range]


@dataclass(frozen=True)
class _Matches:
    """The matching of one (video, category) in one range: detections best score first (at most 100)."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    n_regular_gt: int


def _outside(value: float, bounds: tuple[float, float]) -> bool:
    return value < bounds[0] or value > bounds[1]


def _best_per_category(detections: list[PredictedTrack]) -> list[PredictedTrack]:
    """Each category's detections, best score first (a stable sort: ties keep file order), at most 100."""
    by_category: dict[int, list[PredictedTrack]] = defaultdict(list)
    for det in detections:
        by_category[det.category_id].append(det)
    kept = []
    for dets in by_category.values():
        kept.extend(dets[i] for i in np.argsort([-d.score for d in dets], kind="mergesort")[:MAX_DETECTIONS[-1]])
    return kept


def _estimated_seconds(job: _VideoJob) -> float:
    """What _evaluate_video(job) takes: its IoUs, one per frame and (detection, ground truth) pair, dominate."""
    n_dets, n_gts = len(job.detections), len(job.ground_truths)
    return job.n_frames * (n_dets * n_gts + n_dets + n_gts) * SECONDS_PER_FRAME_AND_PAIR


def _evaluate_video(job: _VideoJob) -> dict[tuple[int, int], _Matches]:
    """{(category id, range index): matches} for every category with ground truth or detections in the video."""
    gts, dets = job.ground_truths, _best_per_category(job.detections)
    det_areas = frame_areas([d.segmentations for d in dets], job.n_frames)
    gt_areas = frame_areas([g.segmentations for g in gts], job.n_frames)
    ious = video_iou([d.segmentations for d in dets], [g.segmentations for g in gts], det_areas, gt_areas)
    det_size = np.array([mean_nonzero_area(row) for row in det_areas])
    gt_size = [mean_nonzero_area(g.areas) for g in gts]  # from the json's areas, as the official tools do
    gt_occlusion = [None if g.occlusion is None else occlusion_score(g.occlusion) for g in gts]
    results = {}
    for category in dict.fromkeys([g.category_id for g in gts] + [d.category_id for d in dets]):
        d_index = [i for i, d in enumerate(dets) if d.category_id == category]
        g_index = [j for j, g in enumerate(gts) if g.category_id == category]
        scores = np.array([dets[i].score for i in d_index], np.float64)
        for r, bounds in enumerate(job.ranges):
            gt_ignored = np.array([gts[j].iscrowd or _outside(gt_size[j], bounds.area)
                                   or (bounds.occlusion is not None and _outside(gt_occlusion[j], bounds.occlusion))
                                   for j in g_index], bool)
            gt_order = np.argsort(gt_ignored, kind="mergesort")  # regular ground truths first
            gt_ignored = gt_ignored[gt_order]
            ordered = [g_index[k] for k in gt_order]
            crowd = np.array([gts[j].iscrowd for j in ordered], bool)
            match = greedy_match(ious[np.ix_(d_index, ordered)], gt_ignored, crowd)
            matched = match >= 0
            det_outside = (det_size[d_index] < bounds.area[0]) | (det_size[d_index] > bounds.area[1])
            # A matched detection is ignored with its ground truth (match -1 reads the appended False), an
            # unmatched one when its area is outside the range.
            ignored = np.where(matched, np.append(gt_ignored, False)[match], det_outside[None, :])
            results[category, r] = _Matches(scores, matched, ignored, int((~gt_ignored).sum()))
    return results


def _precision_recall(matches: list[_Matches], max_detections: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Interpolated precision (T, R) at the recall thresholds and final recall (T,) over the videos' matches
    (in video id order), keeping each video's best `max_detections`; None when no regular ground truth."""
    n_gt = sum(m.n_regular_gt for m in matches)
    if n_gt == 0:
        return None
    scores = np.concatenate([m.scores[:max_detections] for m in matches])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([m.matched[:, :max_detections] for m in matches], axis=1)[:, order]
    ignored = np.concatenate([m.ignored[:, :max_detections] for m in matches], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    n_det = tp.shape[1]
    precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    if n_det == 0:
        return precision, np.zeros(len(IOU_THRESHOLDS))
    recall = tp / n_gt
    # Precision made non-increasing from the right: the best precision at any higher recall.
    envelope = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[:, ::-1], axis=1)[:, ::-1]
    for t in range(len(IOU_THRESHOLDS)):
        index = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        reached = index < n_det
        precision[t, reached] = envelope[t, index[reached]]
    return precision, recall[:, -1]


def evaluate_video_map(ground_truth_path: Path, results_path: Path, *, workers: int = 1, ovis: bool = False) -> dict:
    """Video mAP statistics {name: value} of results.json against a YouTube-VIS (or OVIS) ground-truth json."""
    gt = read_ground_truth(ground_truth_path, occlusion=ovis)
    detections = read_results(results_path, gt.videos, gt.category_ids)
    statistics = OVIS_STATISTICS if ovis else YTVIS_STATISTICS
    range_names = list(dict.fromkeys((s.area, s.occlusion) for s in statistics))
    ranges = [_Range(AREA_RANGES[a], OCCLUSION_RANGES[o] if ovis else None) for a, o in range_names]

    video_ids = sorted(gt.videos)
    gts_of, dets_of = defaultdict(list), defaultdict(list)
    for track in gt.tracks:
        gts_of[track.video_id].append(track)
    for track in detections:
        dets_of[track.video_id].append(track)
    jobs = [_VideoJob(gt.videos[v].length, gts_of[v], dets_of[v], ranges) for v in video_ids]
    per_video = parallel_map(_evaluate_video, jobs, workers, seconds=_estimated_seconds)

    shape = (len(IOU_THRESHOLDS), len(gt.category_ids), len(ranges), len(MAX_DETECTIONS))
    precision = -np.ones((shape[0], len(RECALL_THRESHOLDS), *shape[1:]))
    recall = -np.ones(shape)
    for k, category in enumerate(gt.category_ids):
        for r in range(len(ranges)):
            matches = [video[category, r] for video in per_video if (category, r) in video]
            for m, max_detections in enumerate(MAX_DETECTIONS):
                curves = _precision_recall(matches, max_detections) if matches else None
                if curves is not None:
                    precision[:, :, k, r, m], recall[:, k, r, m] = curves

    summary = {}
    for stat in statistics:
        thresholds = slice(None) if stat.iou is None else np.where(IOU_THRESHOLDS == stat.iou)[0]
        r = range_names.index((stat.area, stat.occlusion))
        m = MAX_DETECTIONS.index(stat.max_detections)
        values = precision[thresholds, :, :, r, m] if stat.precision else recall[thresholds, :, r, m]
        values = values[values > -1]
        summary[stat.name] = float(values.mean()) if values.size else -1.0
    return summary


def _results_file(pred: Path) -> Path:
    """`pred` may be results.json itself or the folder infer.py wrote it to."""
    return pred / "results.json" if pred.is_dir() else pred


def evaluate_ytvis(pred: Path, gt: Path, *, workers: int = 1) -> dict:
    """YouTube-VIS video mAP: the 12 statistics AP ... ARl (see the module docstring)."""
    return evaluate_video_map(Path(gt), _results_file(Path(pred)), workers=workers)


def evaluate_ovis(pred: Path, gt: Path, *, workers: int = 1) -> dict:
    """OVIS video mAP: the 12 YouTube-VIS statistics and the 6 occlusion ones (see the module docstring)."""
    return evaluate_video_map(Path(gt), _results_file(Path(pred)), workers=workers, ovis=True)
