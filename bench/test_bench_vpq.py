"""VPQ speed: tarvis_fast's evaluator against a straightforward per-frame loop (the official evaluators' approach:
every window re-reads its frames and runs np.unique over its pixels, then matches segments in Python dicts).

    python -m pytest bench/test_bench_vpq.py --benchmark-enable -s

Data: a synthetic Cityscapes-VPS set of 30 videos x 6 frames at 512x1024, and (when ../shared/data is present) the
real 50-frame DAVIS clip recast as one VIPSeg video. Both implementations must agree; the loop doubles as a check.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import os

import numpy as np
import pytest

from tarvis_fast.evaluation import synthetic, vpq
from tarvis_fast.formats import panoptic

WORKERS = 2


def per_frame_loop_vpq(gt: panoptic.PanopticDataset, predictions: Sequence[panoptic.PanopticVideo],
                       windows: Sequence[int]) -> dict[str, float]:
    """VPQ All per window label, computed window by window and frame by frame."""
    results = {}
    for nframes in windows:
        stats = defaultdict(lambda: [0, 0, 0, 0.0])  # category -> TP, FP, FN, IoU sum
        for gt_video, pred_video in zip(gt.videos, predictions):
            for start in range(len(gt_video.frames) - nframes + 1):
                gt_segments, pred_segments, intersections = {}, {}, Counter()
                for gt_frame, pred_frame in zip(gt_video.frames[start:start + nframes],
                                                pred_video.frames[start:start + nframes]):
                    gt_ids = panoptic.read_panoptic_png(gt_frame.png).astype(np.uint64)
                    pred_ids = panoptic.read_panoptic_png(pred_frame.png).astype(np.uint64)
                    for s in gt_frame.segments:
                        first = gt_segments.setdefault(s.id, [s.category_id, s.iscrowd, 0])
                        first[2] += s.area
                    labels, counts = np.unique(pred_ids, return_counts=True)
                    areas = dict(zip(labels.tolist(), counts.tolist()))
                    for s in pred_frame.segments:
                        pred_segments.setdefault(s.id, [s.category_id, 0])[1] += areas[s.id]
                    keys, counts = np.unique((gt_ids << np.uint64(24)) | pred_ids, return_counts=True)
                    for key, count in zip(keys.tolist(), counts.tolist()):
                        intersections[key >> 24, key & 0xFFFFFF] += count
                matched_gt, matched_pred = set(), set()
                for (g, p), inter in intersections.items():
                    if g not in gt_segments or p not in pred_segments or gt_segments[g][1]:
                        continue
                    if gt_segments[g][0] != pred_segments[p][0]:
                        continue
                    iou = inter / (pred_segments[p][1] + gt_segments[g][2] - inter - intersections.get((0, p), 0))
                    if iou > 0.5:
                        stats[gt_segments[g][0]][0] += 1
                        stats[gt_segments[g][0]][3] += iou
                        matched_gt.add(g)
                        matched_pred.add(p)
                crowd = {}
                for g, (category, iscrowd, _) in gt_segments.items():
                    if iscrowd:
                        crowd[category] = g
                    elif g not in matched_gt:
                        stats[category][2] += 1
                for p, (category, area) in pred_segments.items():
                    if p in matched_pred:
                        continue
                    ignored = intersections.get((0, p), 0) + intersections.get((crowd.get(category, -1), p), 0)
                    if ignored / area <= 0.5:
                        stats[category][1] += 1
        pqs = [iou / (tp + fp / 2 + fn / 2) for tp, fp, fn, iou in stats.values() if tp + fp + fn]
        results[vpq.window_label(nframes)] = 100 * sum(pqs) / len(pqs)
    return results


@pytest.fixture(scope="module")
def cityscapes_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vpq30")
    synthetic.write_cityscapes_vps_set(root, seed=0, videos=30, height=512, width=1024)
    return root


@pytest.fixture(scope="module")
def davis_vipseg_set(tmp_path_factory) -> Path:
    shared = Path(os.environ.get("TARVIS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    davis = shared / "davis"
    if not (davis / "osvos" / "horsejump-high").is_dir():
        pytest.skip(f"DAVIS clip not found under {davis}")
    root = tmp_path_factory.mktemp("davis_vipseg")
    synthetic.write_davis_as_vipseg(davis, root, "rvos", range(50))
    return root


def _bench(benchmark, group, evaluate, gt, predictions, windows):
    benchmark.group = group
    return benchmark.pedantic(evaluate, args=(gt, predictions, windows), rounds=1, iterations=1)


def _ours(gt, predictions, windows):
    result, _ = vpq.compute_vpq(gt, predictions, windows, workers=WORKERS)
    return {vpq.window_label(n): result[vpq.window_label(n)]["All"]["PQ"] for n in windows}


@pytest.mark.parametrize("implementation", [_ours, per_frame_loop_vpq], ids=["tarvis_fast", "per_frame_loop"])
def test_bench_vpq_30_videos(benchmark, cityscapes_set, implementation):
    gt = panoptic.read_cityscapes_vps_gt(cityscapes_set / "gt")
    predictions = panoptic.read_cityscapes_vps_predictions(cityscapes_set / "pred", gt)
    result = _bench(benchmark, "vpq-cityscapes-30x6x512x1024", implementation, gt, predictions,
                    vpq.CITYSCAPES_VPS_WINDOWS)
    assert result == pytest.approx(_ours(gt, predictions, vpq.CITYSCAPES_VPS_WINDOWS), abs=1e-9)


@pytest.mark.parametrize("implementation", [_ours, per_frame_loop_vpq], ids=["tarvis_fast", "per_frame_loop"])
def test_bench_vpq_davis_clip(benchmark, davis_vipseg_set, implementation):
    gt = panoptic.read_vipseg_gt(davis_vipseg_set / "gt")
    predictions = panoptic.read_vipseg_predictions(davis_vipseg_set / "pred", gt)
    result = _bench(benchmark, "vpq-davis-50x480x854", implementation, gt, predictions, vpq.VIPSEG_WINDOWS)
    assert result == pytest.approx(_ours(gt, predictions, vpq.VIPSEG_WINDOWS), abs=1e-9)
