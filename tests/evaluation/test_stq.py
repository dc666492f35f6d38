"""STQ: hand-derived toys for AQ, IoU, crowd and void; the VIPSeg script's instance numbering; deeplab2's numbers on a
synthetic KITTI-STEP set."""
from __future__ import annotations

import numpy as np
import pytest

from tarvis_fast.evaluation import stq, synthetic
from tarvis_fast.formats import kitti_step
from tarvis_fast.formats.kitti_step import KittiStepFormatError
from tarvis_fast.formats.panoptic import Category, Segment

PERSON, VOID = 11, 255


def _kitti(*frames) -> stq.SequenceStq:
    """One KITTI-STEP sequence from frames of (gt semantic, gt instance, pred semantic, pred instance) rows."""
    accumulator = stq.SequenceAccumulator(stq.KITTI_STEP_LABELS)
    for frame in frames:
        accumulator.add_frame(*(np.array([row]) for row in frame))
    return accumulator.result()


def test_perfect_prediction():
    frame = ([0, PERSON, PERSON, 13], [0, 1, 1, 4], [0, PERSON, PERSON, 13], [0, 9, 9, 2])
    result = stq.stq_result([_kitti(frame, frame)], ["s"])
    assert (result["STQ"], result["AQ"], result["IoU"]) == (1.0, 1.0, 1.0)
    assert result["Length_per_seq"] == [2] and result["ID_per_seq"] == ["s"]


def test_merged_tracks():
    # Two 2-pixel persons predicted as one 4-pixel track: each ground-truth track g has TPA = 2 with |p| = 4, so
    # (1/|g|) TPA·TPA/(|p| + |g| - TPA) = (1/2)·2·2/4 = 1/2; AQ = (1/2 + 1/2)/2 tracks = 1/2. Semantics are right,
    # IoU = 1, STQ = sqrt(1/2).
    result = stq.stq_result([_kitti(([PERSON] * 4, [1, 1, 2, 2], [PERSON] * 4, [5] * 4))], ["s"])
    assert result["AQ"] == 0.5 and result["IoU"] == 1.0 and result["STQ"] == pytest.approx(np.sqrt(0.5))


def test_crowd_is_removed_from_both_sides():
    # Pixel 1 is a person with instance 0 (crowd): dropped from the ground truth and the prediction, so the predicted
    # track 7 keeps 1 pixel, all on track 3: AQ 1. The ignore pixel predicted as road is not a false positive.
    result = stq.stq_result([_kitti(([0, PERSON, PERSON, VOID], [0, 0, 3, 0], [0, PERSON, PERSON, 0], [0, 7, 7, 0]))],
                            ["s"])
    assert (result["AQ"], result["IoU"]) == (1.0, 1.0)


def test_void_prediction_on_a_labelled_pixel():
    # Road predicted as void on one of two pixels: road IoU 1/2; the void column then has a non-zero union and counts
    # as a class with IoU 0, so IoU = (1/2 + 0)/2 = 1/4 (the official confusion-matrix rule). No thing: AQ 0.
    result = stq.stq_result([_kitti(([0, 0], [0, 0], [0, VOID], [0, 0]))], ["s"])
    assert result["IoU"] == 0.25 and result["AQ"] == 0.0 and result["STQ"] == 0.0


def test_aq_pools_tracks_over_sequences():
    # Sequence a: one 4-pixel track found exactly -> 1. Sequence b: one 4-pixel track split in halves ->
    # (1/4)(2·2/4 + 2·2/4) = 1/2. AQ = (1 + 1/2)/2 tracks; per sequence [1, 1/2].
    a = _kitti(([PERSON] * 4, [1] * 4, [PERSON] * 4, [1] * 4))
    b = _kitti(([PERSON] * 4, [1] * 4, [PERSON] * 4, [1, 1, 2, 2]))
    result = stq.stq_result([a, b], ["a", "b"])
    assert result["AQ"] == 0.75 and result["AQ_per_seq"] == [1.0, 0.5] and result["IoU_per_seq"] == [1.0, 1.0]
    assert result["STQ_per_seq"] == pytest.approx([1.0, np.sqrt(0.5)])


def test_no_labelled_class_gives_undefined_iou():
    result = stq.stq_result([_kitti(([VOID], [0], [VOID], [0]))], ["s"])
    assert result["IoU"] is None and result["STQ"] is None and result["IoU_per_seq"] == [None]


VIPSEG_CATS = {0: Category(0, "road", False, (1, 1, 1)), 1: Category(1, "car", True, (2, 2, 2))}


@pytest.mark.parametrize("listing, expected_aq", [([5, 9, 6], 1.0), ([9, 5, 6], 0.5)])
def test_vipseg_numbers_segments_by_first_listing(listing, expected_aq):
    # Ground truth [car 5, car 5, road 9, car 6], prediction one car 7 over both cars. The VIPSeg script numbers
    # segments 0, 1, ... in listing order, and a thing numbered 0 is crowd:
    #   listed 5, 9, 6: car 5 is crowd and leaves both sides; car 6 (1 px) vs the rest of 7 (1 px): AQ 1.
    #   listed 9, 5, 6: two tracks against |7| = 3: car 5: (1/2)·2·2/3 = 2/3, car 6: 1·1/3; AQ = (2/3 + 1/3)/2.
    classes = {5: 1, 6: 1, 9: 0, 7: 1}
    gt_ids, pred_ids = np.array([[5, 5, 9, 6]]), np.array([[7, 7, 9, 7]])
    gt_segments = [Segment(i, classes[i], False, 1) for i in listing]
    pred_segments = [Segment(i, classes[i], False, 1) for i in (7, 9)]
    accumulator = stq.SequenceAccumulator(stq.vipseg_labels(VIPSEG_CATS))
    accumulator.add_frame(
        *stq.vipseg_semantic_instance(gt_ids, gt_segments, stq.vipseg_instance_numbers([gt_segments])),
        *stq.vipseg_semantic_instance(pred_ids, pred_segments, stq.vipseg_instance_numbers([pred_segments])))
    assert stq.stq_result([accumulator.result()], ["v"])["AQ"] == pytest.approx(expected_aq)


# Expected values: TarViS' eval/kitti_step/main.py loop run with deeplab2's numpy STQuality (19 classes, things
# [11, 13], ignore 255, label shift 16, offset 2^24) on this synthetic set (seed 7): the copy bundled with
# VIPSeg-Dataset (commit 92e1459d), which counts in int64 like the TF version TarViS used, gave these exactly;
# deeplab2 HEAD (commit 64bc1c1a, float32 counts) agrees to 2e-8.
KITTI_SEED7 = {"STQ": 0.6482768206895998, "AQ": 0.5891749332297792, "IoU": 0.713307394018938,
               "STQ_per_seq": [0.6090015177194816, 0.5091224340997861, 0.751165749471581],
               "AQ_per_seq": [0.5750280760614225, 0.49037356791723796, 0.7021231557106774],
               "IoU_per_seq": [0.6449821565669355, 0.528588141495094, 0.8036339189071148]}


def test_kitti_step_matches_deeplab2(tmp_path):
    synthetic.write_kitti_step_set(tmp_path, seed=7)
    result = stq.evaluate_kitti_step(tmp_path / "pred", tmp_path / "gt", workers=2)
    for key, value in KITTI_SEED7.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert result["ID_per_seq"] == ["0000", "0001", "0002"] and result["Length_per_seq"] == [5, 4, 5]


def test_kitti_step_malformed_predictions(tmp_path):
    synthetic.write_kitti_step_set(tmp_path, seed=1, sequences=2)
    frame = sorted((tmp_path / "pred" / "0001").iterdir())[1]
    semantic, instance = kitti_step.read_kitti_step_png(frame)
    kitti_step.write_kitti_step_png(frame, np.where(semantic == semantic[0, 0], 19, semantic), instance)
    with pytest.raises(KittiStepFormatError, match=rf"0001/{frame.name}: unknown semantic ids \[19\]"):
        stq.evaluate_kitti_step(tmp_path / "pred", tmp_path / "gt")
    kitti_step.write_kitti_step_png(frame, semantic[:, :-1], instance[:, :-1])
    with pytest.raises(KittiStepFormatError, match=rf"0001/{frame.name}: size 43x30 .* ground truth's 44x30"):
        stq.evaluate_kitti_step(tmp_path / "pred", tmp_path / "gt")
    frame.unlink()
    with pytest.raises(KittiStepFormatError, match=rf"1 predicted frames missing, e.g. .*0001/{frame.name}"):
        stq.evaluate_kitti_step(tmp_path / "pred", tmp_path / "gt")
