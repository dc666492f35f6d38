"""YouTube-VIS / OVIS video mAP against hand-derived values and against the official evaluators.

Oracle numbers: youtubevos/cocoapi at commit f3f9948 (`PythonAPI/pycocotools/ytvos.py`, `ytvoseval.py`) and
qjy981010/cocoapi at commit 886baff (`ovis.py`, `oviseval.py`), run on top of PyPI pycocotools 2.0.11's mask
API with numpy 2.4.6 (two numpy-2 edits to the official files: `np.float` -> `np.float64`, and an int() around
the `num` of the two np.linspace calls in YTVOSeval's Params), on the files `synthetic_vis` writes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tarvis_fast.evaluation.__main__ import main as cli_main
from tarvis_fast.evaluation.ytvis import (
    OVIS_STATISTICS,
    YTVIS_STATISTICS,
    evaluate_ovis,
    evaluate_ytvis,
    frame_areas,
    greedy_match,
    occlusion_score,
    video_iou,
)
from tarvis_fast.formats.rle import to_compressed
from tarvis_fast.formats.ytvis import OCCLUSION_LEVELS, track_from_masks, write_results

YTVIS_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE, as the real YouTube-VIS ground truth stores it: run lengths of the
    column-major pixels, starting with a (possibly empty) run of zeros."""
    pixels = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(pixels)) + 1
    runs = np.diff(np.concatenate([[0], changes, [pixels.size]])).tolist()
    if pixels[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def ground_truth_json(path: Path, videos: list[tuple[int, int, int, int]], categories: list[int],
                      tracks: list[dict]) -> Path:
    """Write a YouTube-VIS ground-truth json with uncompressed RLEs. videos: (id, height, width, length);
    tracks: {video_id, category_id, masks: per frame (H, W) bool or None, [iscrowd], [occlusion]}; the
    areas are the masks' pixel counts."""
    annotations = []
    for i, track in enumerate(tracks, 1):
        annotations.append({
            "id": i, "video_id": track["video_id"], "category_id": track["category_id"],
            "iscrowd": track.get("iscrowd", 0),
            "segmentations": [None if m is None else uncompressed_rle(m) for m in track["masks"]],
            "areas": [None if m is None else int(m.sum()) for m in track["masks"]],
            **({"occlusion": track["occlusion"]} if "occlusion" in track else {}),
        })
    data = {"videos": [{"id": v, "height": h, "width": w, "length": n,
                        "file_names": [f"{v}/{t:05d}.jpg" for t in range(n)]} for v, h, w, n in videos],
            "categories": [{"id": c, "name": f"class{c}", "supercategory": "object"} for c in categories],
            "annotations": annotations}
    path.write_text(json.dumps(data))
    return path


def box(height: int, width: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


# ---------------------------------------------------------------------------------------------- building blocks

def test_uncompressed_rle_helper_is_what_pycocotools_reads():
    mask = np.array([[1, 0, 1], [1, 1, 0]], bool)  # column-major: 1 1 | 0 1 | 1 0 -> runs 0, 2, 1, 2, 1
    assert uncompressed_rle(mask)["counts"] == [0, 2, 1, 2, 1]
    from pycocotools import mask as mask_api
    np.testing.assert_array_equal(mask_api.decode(to_compressed(uncompressed_rle(mask))), mask)


def test_video_iou_by_hand():
    # Two frames of 4x5. Frame 0: d = 6 px, g = 4 px inside it -> |d∩g| = 4, |d∪g| = 6. Frame 1: only g
    # (3 px) -> adds 3 to the union. Frame 2: neither. IoU = 4 / 9. A second detection absent everywhere: 0.
    d0, g0, g1 = box(4, 5, 0, 0, 2, 3), box(4, 5, 0, 0, 2, 2), box(4, 5, 3, 0, 4, 3)
    enc = lambda m: to_compressed(track_from_masks(1, 1, 1.0, m[None]).segmentations[0])  # noqa: E731
    detections, ground_truths = [[enc(d0), None, None], [None, None, None]], [[enc(g0), enc(g1), None]]
    det_areas, gt_areas = frame_areas(detections, 3), frame_areas(ground_truths, 3)
    np.testing.assert_array_equal(det_areas, [[6, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(gt_areas, [[4, 3, 0]])
    ious = video_iou(detections, ground_truths, det_areas, gt_areas)
    np.testing.assert_allclose(ious, [[4 / 9], [0.0]], rtol=0, atol=1e-15)


def test_greedy_match_by_hand():
    ious = np.array([[0.9, 0.9, 0.0],   # a tie between the two regular ground truths: the later one wins
                     [0.8, 0.6, 0.0],   # its best is taken at t <= .9, so it falls back to the other one
                     [0.0, 0.0, 0.7]])  # only the ignored (crowd) ground truth
    match = greedy_match(ious, gt_ignored=np.array([False, False, True]), gt_crowd=np.array([False, False, True]))
    # thresholds .50 .55 .60 .65 .70 .75 .80 .85 .90 .95
    np.testing.assert_array_equal(match[:, 0], [1] * 9 + [-1])
    np.testing.assert_array_equal(match[:, 1], [0] * 7 + [-1] * 3)  # takes g0 (0.8) while 0.8 >= t
    np.testing.assert_array_equal(match[:, 2], [2] * 5 + [-1] * 5)


def test_occlusion_score_by_hand():
    # levels 0, .25, .75, .75, missing -> top ceil(4/2) = 2 scores: (.75 + .75) / 2
    assert occlusion_score(["no_occlusion", "slight_occlusion", "severe_occlusion", "severe_occlusion", None]) == 0.75
    # 3 levels 0, 0, .25 -> top 2: (0 + .25) / 2
    assert occlusion_score(["no_occlusion", "no_occlusion", "slight_occlusion"]) == 0.125


# ---------------------------------------------------------------------------------------------- small cases by hand

def hand_case(tmp_path: Path, *, crowd: bool) -> tuple[Path, Path]:
    """One 4x5 video of 3 frames, categories 1 and 2 (2 has no ground truth).
    Ground truth g (category 1): frame 0 = 4 px, frames 1, 2 absent -> area 4 (small).
    d1 (score .9, category 1): 4 px disjoint from g in frame 0 -> IoU 0.
    d2 (score .8, category 1): = g in frame 0, 2 px in frame 1 -> IoU 4 / 6 = .667: matches at t = .50 ... .65.
    d3 (score .95, category 2): no ground truth in its category, so it never counts.
    With crowd=True a crowd ground truth (category 1) equal to d1 makes d1 an ignored detection."""
    g = box(4, 5, 0, 0, 2, 2)
    d1 = box(4, 5, 2, 3, 4, 5)
    tracks = [{"video_id": 7, "category_id": 1, "masks": [g, None, None]}]
    if crowd:
        tracks.append({"video_id": 7, "category_id": 1, "masks": [d1, None, None], "iscrowd": 1})
    gt = ground_truth_json(tmp_path / "gt.json", [(7, 4, 5, 3)], [1, 2], tracks)
    empty = np.zeros((4, 5), bool)
    write_results(tmp_path / "results.json", [
        track_from_masks(7, 1, 0.9, np.stack([d1, empty, empty])),
        track_from_masks(7, 1, 0.8, np.stack([g, box(4, 5, 3, 0, 4, 2), empty])),
        track_from_masks(7, 2, 0.95, np.stack([g, g, g])),
    ])
    return tmp_path / "results.json", gt


def test_hand_case_without_crowd(tmp_path):
    pred, gt = hand_case(tmp_path, crowd=False)
    stats = evaluate_ytvis(pred, gt, workers=1)
    # Order d1 (FP), d2: at t <= .65 (4 of 10 thresholds) tp = [0, 1], fp = [1, 1] -> precision [0, .5],
    # recall [0, 1]; the envelope is .5 at every recall point -> AP_t = .5; else AP_t = 0.
    # AP = 4 * .5 / 10 = .2; AP50 = .5; AP75 = 0. Recall: 1 at 4 thresholds -> AR10 = AR100 = .4;
    # AR1 keeps only d1 -> 0. Everything is small: APs = AP, ARs = AR100; medium and large have no
    # ground truth -> -1. (The official YTVOSeval gives the same 12 numbers on these files.)
    expected = {"AP": 0.2, "AP50": 0.5, "AP75": 0.0, "APs": 0.2, "APm": -1.0, "APl": -1.0,
                "AR1": 0.0, "AR10": 0.4, "AR100": 0.4, "ARs": 0.4, "ARm": -1.0, "ARl": -1.0}
    assert stats == pytest.approx(expected, abs=1e-12)


def test_hand_case_with_crowd(tmp_path):
    pred, gt = hand_case(tmp_path, crowd=True)
    stats = evaluate_ytvis(pred, gt, workers=1)
    # d1 now matches the crowd ground truth (IoU 1) at every threshold and is ignored. At t <= .65, d2 is a
    # TP with precision 1 -> AP_t = 1; above, d2 is a FP and recall stays 0 -> AP_t = 0. AP = .4, AP50 = 1,
    # AR10 = AR100 = .4; AR1 sees only the ignored d1 -> 0. (The official YTVOSeval agrees.)
    expected = {"AP": 0.4, "AP50": 1.0, "AP75": 0.0, "APs": 0.4, "APm": -1.0, "APl": -1.0,
                "AR1": 0.0, "AR10": 0.4, "AR100": 0.4, "ARs": 0.4, "ARm": -1.0, "ARl": -1.0}
    assert stats == pytest.approx(expected, abs=1e-12)


def test_empty_predictions(tmp_path):
    # The official loadRes fails on an empty list (it reads anns[0]); here every category with ground
    # truth gets precision and recall 0, and ranges without ground truth stay -1.
    _, gt = hand_case(tmp_path, crowd=False)
    write_results(tmp_path / "empty.json", [])
    stats = evaluate_ytvis(tmp_path / "empty.json", gt, workers=1)
    assert stats == {name: (-1.0 if name[-1] in "ml" else 0.0) for name in YTVIS_NAMES}


def test_statistic_names():
    assert [s.name for s in YTVIS_STATISTICS] == YTVIS_NAMES
    assert [s.name for s in OVIS_STATISTICS] == YTVIS_NAMES[:6] + ["APso", "APmo", "APho"] + YTVIS_NAMES[6:] + [
        "ARso", "ARmo", "ARho"]


# ---------------------------------------------------------------------------------------------- official numbers

SIZES = {"small": ((10, 100), (10, 120)), "medium": ((120, 200), (150, 260)), "large": ((250, 300), (300, 400))}


def synthetic_vis(folder: Path, seed: int, *, ovis: bool) -> tuple[Path, Path]:
    """A random but reproducible VIS set: 10 videos (one without any track) of 300x400 pixels and 3-7
    frames; categories 1-4 with 4 absent from the ground truth; small, medium and large ground-truth boxes
    drifting over the frames, some absent or empty in a frame, some crowd; 0-3 detections per ground truth,
    shifted by up to a sixth of the box (some of the wrong category, some missing a frame), false
    positives, and scores on a 0.05 grid so that ties occur."""
    rng = np.random.default_rng(seed)
    height, width = 300, 400
    videos, tracks, detections = [], [], []
    for video_id in range(1, 11):
        length = int(rng.integers(3, 8))
        videos.append((video_id, height, width, length))
        if video_id == 4:
            continue
        for _ in range(int(rng.integers(1, 5))):
            (h_lo, h_hi), (w_lo, w_hi) = SIZES[str(rng.choice(list(SIZES)))]
            h, w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
            y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            masks = []
            for _ in range(length):
                drift = int(rng.integers(-4, 5))
                if rng.random() < 0.15:
                    masks.append(None)
                elif rng.random() < 0.05:
                    masks.append(np.zeros((height, width), bool))
                else:
                    masks.append(box(height, width, y0 + drift, x0 + drift, y0 + h + drift, x0 + w))
            category = int(rng.integers(1, 4))
            track = {"video_id": video_id, "category_id": category, "masks": masks, "iscrowd": int(rng.random() < 0.1)}
            if ovis:
                track["occlusion"] = [None if m is None else str(rng.choice(OCCLUSION_LEVELS)) for m in masks]
            tracks.append(track)
            for _ in range(int(rng.integers(0, 4))):
                dy, dx = int(rng.integers(-h // 6, h // 6 + 1)), int(rng.integers(-w // 6, w // 6 + 1))
                det = np.stack([np.zeros((height, width), bool) if m is None or rng.random() < 0.1
                                else np.roll(m, (dy, dx), axis=(0, 1)) for m in masks])
                det_category = category if rng.random() < 0.85 else int(rng.integers(1, 5))
                detections.append(track_from_masks(video_id, det_category, float(rng.integers(1, 20)) * 0.05, det))
        for _ in range(int(rng.integers(0, 3))):
            y0, x0 = int(rng.integers(0, height - 10)), int(rng.integers(0, width - 10))
            fp = box(height, width, y0, x0, y0 + int(rng.integers(5, 150)), x0 + int(rng.integers(5, 200)))
            detections.append(track_from_masks(video_id, int(rng.integers(1, 5)), float(rng.integers(1, 20)) * 0.05,
                                               np.repeat(fp[None], length, axis=0)))
    gt = ground_truth_json(folder / "gt.json", videos, [1, 2, 3, 4], tracks)
    write_results(folder / "results.json", detections)
    return folder / "results.json", gt


# youtubevos/cocoapi YTVOSeval.stats on synthetic_vis(seed=3, ovis=False)
YTVIS_ORACLE = {"AP": 0.1860863284130611, "AP50": 0.388000338495388, "AP75": 0.2309384784632309,
                "APs": 0.15033003300330033, "APm": 0.13986798679867984, "APl": 0.25597359735973596,
                "AR1": 0.1418518518518518, "AR10": 0.26999999999999996, "AR100": 0.26999999999999996, "ARs": 0.3,
                "ARm": 0.19999999999999998, "ARl": 0.33888888888888885}
# qjy981010/cocoapi OVISeval.stats on synthetic_vis(seed=5, ovis=True)
OVIS_ORACLE = {"AP": 0.21387398246623332, "AP50": 0.4387790319648211, "AP75": 0.14763966275170026,
               "APs": 0.2043026482135393, "APm": 0.21115511551155114, "APl": 0.7762376237623763,
               "APso": 0.15797579757975794, "APmo": 0.11318661358702128, "APho": 0.10343518828345484,
               "AR1": 0.24999999999999997, "AR10": 0.35296296296296287, "AR100": 0.35296296296296287,
               "ARs": 0.3277777777777778, "ARm": 0.36666666666666664, "ARl": 0.775, "ARso": 0.3333333333333333,
               "ARmo": 0.27037037037037037, "ARho": 0.24416666666666664}


def test_youtube_vis_matches_official(tmp_path):
    pred, gt = synthetic_vis(tmp_path, 3, ovis=False)
    stats = evaluate_ytvis(pred, gt, workers=1)
    assert stats == pytest.approx(YTVIS_ORACLE, abs=1e-9)
    assert evaluate_ytvis(tmp_path, gt, workers=2) == stats  # a folder holding results.json; two processes


def test_ovis_matches_official(tmp_path):
    pred, gt = synthetic_vis(tmp_path, 5, ovis=True)
    assert evaluate_ovis(pred, gt, workers=1) == pytest.approx(OVIS_ORACLE, abs=1e-9)


def test_cli_writes_json(tmp_path):
    pred, gt = hand_case(tmp_path, crowd=False)
    assert cli_main(["ytvis", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "stats.json"),
                     "--workers", "1"]) == 0
    assert json.loads((tmp_path / "stats.json").read_text()) == evaluate_ytvis(pred, gt, workers=1)


# ---------------------------------------------------------------------------------------------- malformed input

def test_malformed_results_are_named(tmp_path):
    _, gt = hand_case(tmp_path, crowd=False)
    good = {"video_id": 7, "category_id": 1, "score": 0.5, "segmentations": [None, None, None]}
    cases = [
        ({**good, "video_id": 8}, r"entry 1: unknown video_id 8"),
        ({**good, "category_id": 9}, r"entry 1: unknown category_id 9"),
        ({**good, "segmentations": [None, None]},
         r"entry 1: 'segmentations' must list one entry per frame of video 7 \(3\), got a list of 2"),
        ({**good, "segmentations": [None, {"size": [4, 6], "counts": "0"}, None]},
         r"entry 1 \(video 7\) frame 1: mask size \[4, 6\] \(H, W\), but video 7 is \[4, 5\]"),
        ({**good, "segmentations": [None, None, [1, 2]]}, r"entry 1 \(video 7\) frame 2: expected an RLE dict"),
        ({**good, "score": "high"}, r"entry 1: score must be a number"),
        ({k: v for k, v in good.items() if k != "score"}, r"entry 1: missing score"),
    ]
    for bad, message in cases:
        (tmp_path / "bad.json").write_text(json.dumps([good, bad]))
        with pytest.raises(ValueError, match=r"bad\.json: " + message):
            evaluate_ytvis(tmp_path / "bad.json", gt, workers=1)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        evaluate_ytvis(tmp_path / "bad.json", gt, workers=1)


def test_ovis_needs_occlusion_levels(tmp_path):
    pred, gt = hand_case(tmp_path, crowd=False)
    with pytest.raises(ValueError, match=r"gt\.json: annotations\[0\]: missing occlusion"):
        evaluate_ovis(pred, gt, workers=1)
