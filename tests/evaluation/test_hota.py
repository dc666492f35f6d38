"""BURST point-exemplar-guided HOTA, DetA, AssA and AP: hand-derived toys, and the official burstapi evaluator's
numbers on a synthetic set and on the real DAVIS masks."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.evaluation import hota, synthetic
from tarvis_fast.formats import burst
from tarvis_fast.formats.burst import BurstFormatError
from tarvis_fast.formats.rle import encode_rle

COMMON, UNCOMMON = 4, 1  # LVIS ids: 4 is in the official common list, 1 is not


def _write(tmp_path, tracks: dict[int, tuple[int, list[np.ndarray | None]]],
           predictions: dict[int, list[np.ndarray | None]]):
    """One sequence: ground-truth tracks {id: (category, mask or None per annotated frame)}, predicted masks per
    track id. Returns (results file, ground-truth folder)."""
    frames = len(next(iter(tracks.values()))[1])
    height, width = next(m for _, masks in tracks.values() for m in masks if m is not None).shape
    paths = [f"frame{t:04d}.jpg" for t in range(frames)]
    segmentations = [{str(k): {"rle": encode_rle(masks[t])["counts"], "is_gt": True}
                      for k, (_, masks) in tracks.items() if masks[t] is not None} for t in range(frames)]
    first, seen = [], set()
    for frame in segmentations:
        first.append({k: v for k, v in frame.items() if k not in seen})
        seen |= set(frame)
    sequence = {"id": 1, "dataset": "LaSOT", "seq_name": "toy", "width": width, "height": height, "fps": 1,
                "all_image_paths": paths, "annotated_image_paths": paths, "neg_category_ids": [],
                "not_exhaustive_category_ids": [], "track_category_ids": {str(k): c for k, (c, _) in tracks.items()}}
    synthetic.write_burst_gt(tmp_path / "gt", [sequence | {"segmentations": segmentations}],
                             [sequence | {"segmentations": first}])
    annotations = burst.read_burst_annotations(tmp_path / "gt" / "first_frame_annotations.json")[0]
    masks = {"LaSOT/toy": {paths[t]: {k: m[t] for k, m in predictions.items() if m[t] is not None}
                           for t in range(frames)}}
    burst.write_burst_results(tmp_path / "results.json", annotations, masks)
    return tmp_path / "results.json", tmp_path / "gt"


def _box(y, x, size=2, shape=(6, 6)):
    mask = np.zeros(shape, bool)
    mask[y:y + size, x:x + size] = True
    return mask


def test_hand_derived_scores(tmp_path):
    # Common track 1 is found in frame 0 only (IoU 1) and missed in frame 1: TP 1, FN 1 -> DetA 1/2 at every alpha;
    # its one matched pair has TPA 1, FNA 1 -> AssA 1/2; HOTA = sqrt(DetA AssA) = 1/2. Uncommon track 2 is found
    # exactly in both frames: 1, 1, 1. All averages the two classes. (The official evaluator gives the same.)
    tracks = {1: (COMMON, [_box(0, 0), _box(1, 1)]), 2: (UNCOMMON, [_box(4, 4), _box(4, 3)])}
    results, gt = _write(tmp_path, tracks, {1: [_box(0, 0), None], 2: [_box(4, 4), _box(4, 3)]})
    scores = hota.evaluate_burst(results, gt)
    for row in ("HOTA", "DetA", "AssA"):
        assert scores[row] == pytest.approx({"all": 75.0, "common": 50.0, "uncommon": 100.0}), row
    assert scores["AP"]["uncommon"] == pytest.approx(100.0)


def test_empty_prediction_and_a_split_without_classes(tmp_path):
    # Nothing predicted: no TP at any alpha, every score 0. Only a common class has ground truth, so the uncommon
    # split is empty: None (the official script divides by zero there).
    results, gt = _write(tmp_path, {1: (COMMON, [_box(0, 0), _box(1, 1)])}, {})
    scores = hota.evaluate_burst(results, gt)
    assert {row: scores[row]["common"] for row in scores} == {"HOTA": 0.0, "DetA": 0.0, "AssA": 0.0, "AP": 0.0}
    assert all(scores[row]["uncommon"] is None for row in scores)


def test_malformed_results_are_named(tmp_path):
    results, gt = _write(tmp_path, {1: (COMMON, [_box(0, 0), _box(1, 1)])}, {1: [_box(0, 0), _box(1, 1)]})
    content = json.loads(results.read_text())
    content["sequences"][0]["segmentations"][1]["9"] = content["sequences"][0]["segmentations"][1]["1"]
    results.write_text(json.dumps(content))
    with pytest.raises(BurstFormatError, match="results.json .sequence LaSOT/toy., frame frame0001.jpg: .*9"):
        hota.evaluate_burst(results, gt)


# Expected values: Ali2500/BURST-benchmark (commit c1431986) `python -m burstapi.eval.run --task exemplar_guided
# --nprocs 1 --output out.json`, numpy 1.23.5, on the files these tests write.
SYNTHETIC_SEED7 = {
    "HOTA": {"all": 28.624810989156828, "common": 38.0881352743257, "uncommon": 14.429824561403507},
    "DetA": {"all": 26.637571462221825, "common": 34.77606939610071, "uncommon": 14.429824561403507},
    "AssA": {"all": 31.461198450672136, "common": 42.81544771018455, "uncommon": 14.429824561403507},
    "AP": {"all": 2.3366336633663365, "common": 3.8943894389438944, "uncommon": 0.0},
}


def test_synthetic_set_matches_official_evaluator(tmp_path):
    synthetic.write_burst_set(tmp_path, seed=7)
    scores = hota.evaluate_burst(tmp_path / "results.json", tmp_path / "gt", workers=2)
    for row, values in SYNTHETIC_SEED7.items():
        assert scores[row] == pytest.approx(values, abs=1e-9), row


def write_davis_as_burst(davis_root, out) -> tuple:
    """horsejump-high as one BURST sequence annotated every 5th frame: OSVOS object 1 a common-class track,
    object 2 an uncommon one; the prediction is OSVOS shifted by (2k, 3k) pixels for object k, with object 2
    missed at frame 20."""
    frames = range(0, 50, 5)
    labels = [np.asarray(Image.open(davis_root / "osvos" / "horsejump-high" / f"{t:05d}.png")) for t in frames]
    tracks = {k: (cat, [(lab == k) if (lab == k).any() else None for lab in labels])
              for k, cat in ((1, COMMON), (2, UNCOMMON))}
    predictions = {k: [None if m is None or (k == 2 and t == 20) else np.roll(m, (2 * k, 3 * k), (0, 1))
                       for t, m in zip(frames, masks)] for k, (_, masks) in tracks.items()}
    return _write(out, tracks, predictions)


DAVIS_EXPECTED = {  # official evaluator as above
    "HOTA": {"all": 80.30454925191768, "common": 97.57085020242916, "uncommon": 63.0382483014062},
    "DetA": {"all": 80.30454925191768, "common": 97.57085020242916, "uncommon": 63.0382483014062},
    "AssA": {"all": 80.30454925191768, "common": 97.57085020242916, "uncommon": 63.0382483014062},
    "AP": {"all": 49.99999999999999, "common": 70.0, "uncommon": 29.999999999999993},
}


def test_real_davis_masks(davis_clip, tmp_path):
    scores = hota.evaluate_burst(*write_davis_as_burst(davis_clip, tmp_path))
    for row, values in DAVIS_EXPECTED.items():
        assert scores[row] == pytest.approx(values, abs=1e-9), row
