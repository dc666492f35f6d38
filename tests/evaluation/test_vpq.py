"""VPQ for Cityscapes-VPS and VIPSeg: hand-derived toys for every matching rule, the official evaluators' numbers on
synthetic sets, and the real DAVIS masks recast as a panoptic video."""
from __future__ import annotations

import numpy as np
import pytest

from tarvis_fast.evaluation import synthetic, vpq
from tarvis_fast.formats import panoptic
from tarvis_fast.formats.panoptic import PanopticFormatError, Segment

ROAD, CAR, PERSON = 0, 1, 2
CATS = synthetic.DAVIS_AS_PANOPTIC_CATEGORIES  # road (stuff), car and person (things)


def _segments(ids: np.ndarray, classes: dict[int, int], crowd: tuple[int, ...] = (),
              order: list[int] | None = None) -> list[Segment]:
    """Segments of one (H, W) id map: areas counted from the pixels, listed in `order` (default ascending id)."""
    areas = dict(zip(*np.unique(ids, return_counts=True)))
    return [Segment(i, classes[i], i in crowd, int(areas[i])) for i in (order or sorted(classes)) if i in areas]


def _write(tmp_path, videos: dict[str, list[tuple[np.ndarray, list[Segment], np.ndarray, list[Segment]]]]):
    """One VIPSeg-layout set: per video, frames of (gt ids, gt segments, predicted ids, predicted segments)."""
    writer = panoptic.VipsegPredictionWriter(tmp_path / "pred")
    gt_videos = {}
    for name, frames in videos.items():
        file_names = [f"{t:05d}.png" for t in range(len(frames))]
        gt_videos[name] = [(f, g, gs) for f, (g, gs, _, _) in zip(file_names, frames)]
        writer.add_video(name, file_names, np.stack([p for _, _, p, _ in frames]), [ps for _, _, _, ps in frames])
    panoptic.write_vipseg_gt(tmp_path / "gt", CATS, gt_videos)
    writer.close()
    dataset = panoptic.read_vipseg_gt(tmp_path / "gt")
    return dataset, panoptic.read_vipseg_predictions(tmp_path / "pred", dataset)


def _vpq(tmp_path, videos, windows, workers=1):
    dataset, predictions = _write(tmp_path, videos)
    return vpq.compute_vpq(dataset, predictions, windows, workers=workers)[0]


def test_tube_matching_needs_iou_strictly_above_half(tmp_path):
    # 4x4 frames: road A left half, car B right half, in both frames. The prediction has the road right and the car
    # as b in frame 0 and c in frame 1 (an identity switch).
    #   1-frame windows: every segment matches with IoU 1 -> road and car PQ 1.
    #   2-frame window: road 16/16 -> TP; car tube B (16 px) vs b or c (8 px each): IoU 8/16 = 0.5, not > 0.5,
    #   so B is a FN and b, c are FPs: car PQ 0. All = (1 + 0)/2, Things = car only (person absent) = 0.
    gt = np.array([[10] * 2 + [20] * 2] * 4)
    gt_segments = _segments(gt, {10: ROAD, 20: CAR})
    frames = []
    for car in (30, 40):
        pred = np.where(gt == 10, 5, car)
        frames.append((gt, gt_segments, pred, _segments(pred, {5: ROAD, car: CAR})))
    result = _vpq(tmp_path, {"v": frames}, windows=(1, 2))
    assert result["vpq-0"]["All"] == {"PQ": 100.0, "SQ": 100.0, "RQ": 100.0, "N": 2}
    assert result["vpq-5"]["All"]["PQ"] == 50.0 and result["vpq-5"]["Things"]["PQ"] == 0.0
    assert result["vpq-5"]["Stuff"]["PQ"] == 100.0
    per_class = {c["category_id"]: c for c in result["vpq-5"]["per_class"]}
    assert (per_class[CAR]["TP"], per_class[CAR]["FP"], per_class[CAR]["FN"]) == (0, 2, 1)
    assert result["vpq_all"] == 75.0 and result["vpq_thing"] == 50.0 and result["vpq_stuff"] == 100.0


def test_void_crowd_and_a_class_absent_from_the_ground_truth(tmp_path):
    # 4x5 frame, by column:      0  1  2     3           4
    #   ground truth             A  A  VOID  C (crowd car) A      A: road, 12 px
    #   prediction               a  a  a     p (car)      q (person)
    # A-a: |A∩a| = 8, union = |a| + |A| - 8 - |a∩VOID| = 12 + 12 - 8 - 4 = 12 -> IoU 2/3 > 0.5: road TP, PQ 2/3.
    # p lies wholly on the crowd car -> ignored. q (person, absent from the ground truth) -> FP, person PQ 0.
    # The crowd car is no FN, so car has no counts and stays out of the means.
    gt = np.array([[1, 1, 0, 2, 1]] * 4)
    pred = np.array([[5, 5, 5, 6, 7]] * 4)
    result = _vpq(tmp_path, {"v": [(gt, _segments(gt, {1: ROAD, 2: CAR}, crowd=(2,)),
                                    pred, _segments(pred, {5: ROAD, 6: CAR, 7: PERSON}))]}, windows=(1,))
    summary = result["vpq-0"]
    assert summary["Stuff"]["PQ"] == pytest.approx(200 / 3) and summary["Stuff"]["RQ"] == 100.0
    assert summary["Things"] == {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "N": 1}
    assert summary["All"]["PQ"] == pytest.approx(100 / 3) and summary["All"]["N"] == 2


@pytest.mark.parametrize("order, expected_all", [([1, 2, 3], 100 / 3), ([2, 1, 3], 200 / 3)])
def test_only_the_last_listed_crowd_segment_of_a_class_counts(tmp_path, order, expected_all):
    # 2x4 frame: ground truth  C1 (crowd car) | C2 (crowd car) | A A (road);  prediction  p (car) | a a a (road)
    # A-a: 4 / (6 + 4 - 4) = 2/3 -> road TP. p covers C1 only. The official evaluator keeps one crowd segment per
    # class, the last one listed: listed C1, C2 -> C2, p is not ignored -> car FP, All = (2/3 + 0)/2;
    # listed C2, C1 -> C1, p is ignored -> All = road only = 2/3.
    gt = np.array([[1, 2, 3, 3]] * 2)
    pred = np.array([[5, 6, 6, 6]] * 2)
    result = _vpq(tmp_path, {"v": [(gt, _segments(gt, {1: CAR, 2: CAR, 3: ROAD}, crowd=(1, 2), order=order),
                                    pred, _segments(pred, {5: CAR, 6: ROAD}))]}, windows=(1,))
    assert result["vpq_all"] == pytest.approx(expected_all)


def test_empty_prediction_scores_zero(tmp_path):
    gt = np.array([[1, 1, 2, 2]] * 2)
    pred = np.zeros_like(gt)
    result = _vpq(tmp_path, {"v": [(gt, _segments(gt, {1: ROAD, 2: CAR}), pred, [])]}, windows=(1,))
    assert result["vpq-0"]["All"] == {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "N": 2}


def test_a_video_shorter_than_the_window_adds_nothing(tmp_path):
    # video x: 3 frames predicted perfectly; video y: 1 frame predicted as one car over road and car.
    #   1-frame windows: x gives road and car 3 TPs each (IoU 1). In y the road is a FN, and the car (4 px) against
    #   the predicted car (8 px) has IoU 4/8, not > 0.5: car FN + FP. Road 3/3.5, car 3/4; All = (6/7 + 3/4)/2.
    #   3-frame windows: only x has one -> road and car PQ 1; y (1 frame) adds nothing.
    gt = np.array([[1, 1, 2, 2]] * 2)
    perfect = (gt, _segments(gt, {1: ROAD, 2: CAR}), gt, _segments(gt, {1: ROAD, 2: CAR}))
    wrong_class = np.full_like(gt, 9)
    videos = {"x": [perfect] * 3, "y": [(gt, _segments(gt, {1: ROAD, 2: CAR}), wrong_class,
                                         _segments(wrong_class, {9: CAR}))]}
    result = _vpq(tmp_path, videos, windows=(1, 3), workers=2)
    assert result["vpq-0"]["All"]["PQ"] == pytest.approx(50 * (6 / 7 + 3 / 4))
    assert result["vpq-10"]["All"]["PQ"] == 100.0
    assert result["vpq_all"] == pytest.approx((50 * (6 / 7 + 3 / 4) + 100) / 2)


def test_no_window_at_all_leaves_vpq_undefined(tmp_path):
    gt = np.array([[1, 2]])
    result = _vpq(tmp_path, {"v": [(gt, _segments(gt, {1: ROAD, 2: CAR}), gt, _segments(gt, {1: ROAD, 2: CAR}))]},
                  windows=(1, 2))
    assert result["vpq-5"]["All"]["PQ"] is None and result["vpq_all"] is None  # official: ZeroDivisionError


def test_ground_truth_area_below_its_pixels_is_an_error(tmp_path):
    gt = np.array([[1, 1, 2, 2]])
    bad = [Segment(1, ROAD, False, 1), Segment(2, CAR, False, 2)]  # road has 2 pixels but claims 1
    with pytest.raises(PanopticFormatError, match="video v, frames 00000.png: .*IoU 2.000 > 1"):
        _vpq(tmp_path, {"v": [(gt, bad, gt, _segments(gt, {1: ROAD, 2: CAR}))]}, windows=(1,))


def test_malformed_prediction_names_file_and_frame(tmp_path):
    synthetic.write_vipseg_set(tmp_path, seed=3, videos=2)
    video = sorted((tmp_path / "pred" / "pan_pred").iterdir())[1]
    png = sorted(video.iterdir())[0]
    ids = panoptic.read_panoptic_png(png)
    panoptic.write_panoptic_png(png, np.where(ids == ids[0, 0], 123456, ids))
    with pytest.raises(PanopticFormatError, match=rf"{png.name} \(frame {png.name}\).*\[123456\] are in the PNG"):
        vpq.evaluate_vipseg(tmp_path / "pred", tmp_path / "gt")


# Expected values: the official evaluators run on these synthetic sets (seed 7), printed at full precision:
# mcahny/vps tools/eval_vpq.py (commit 138503ed) for Cityscapes-VPS; VIPSeg-Dataset ClipPanoFCN/eval_vpq_vspw.py and
# eval_stq_vspw.py (commit 92e1459d) for VIPSeg; both under numpy 1.23.5.
CITYSCAPES_VPS_SEED7 = {  # per window: (All, Things, Stuff)
    "vpq-0": (44.69297656272076, 31.225563909774433, 51.426682889193934),
    "vpq-5": (37.91749494619798, 15.216117216117217, 49.268183811238366),
    "vpq-10": (34.73999812307728, 12.204184704184703, 46.00790483252356),
    "vpq-15": (31.944873043213356, 8.140589569160998, 43.84701478023953),
}
VIPSEG_SEED7 = {
    "vpq-0": (45.428871365205616, 20.758526691270056, 63.05054613230244),
    "vpq-5": (40.59162294961543, 12.802531781857349, 60.440973783728325),
    "vpq-15": (38.762796668547054, 1.4715359828141783, 60.072088488965846),
    "vpq-25": (38.477958689165355, 1.8639455782312926, 59.40025189541339),
    "vpq-35": (31.370012994105274, 0.0, 56.4660233893895),
}
VIPSEG_STQ_SEED7 = {"STQ": 0.4410671571934378, "AQ": 0.33568495894030526, "IoU": 0.5795321832971843}


def _check_against_official(result: dict, expected: dict) -> None:
    for label, values in expected.items():
        got = tuple(result[label][group]["PQ"] for group in ("All", "Things", "Stuff"))
        assert got == pytest.approx(values, abs=1e-9), label
    for key, column in (("vpq_all", 0), ("vpq_thing", 1), ("vpq_stuff", 2)):
        assert result[key] == pytest.approx(np.mean([v[column] for v in expected.values()]), abs=1e-9)


def test_cityscapes_vps_matches_official_evaluator(tmp_path):
    synthetic.write_cityscapes_vps_set(tmp_path, seed=7)
    result = vpq.evaluate_cityscapes_vps(tmp_path / "pred", tmp_path / "gt", workers=2)
    _check_against_official(result, CITYSCAPES_VPS_SEED7)


def test_vipseg_matches_official_evaluators(tmp_path):
    synthetic.write_vipseg_set(tmp_path, seed=7)
    result = vpq.evaluate_vipseg(tmp_path / "pred", tmp_path / "gt", workers=2)
    _check_against_official(result, VIPSEG_SEED7)
    for key, value in VIPSEG_STQ_SEED7.items():
        assert result["STQ"][key] == pytest.approx(value, abs=1e-12)
    assert result["STQ"]["Length_per_seq"] == [10, 6, 10, 2]


# The real horsejump-high masks, every second frame (25 frames, 854x480), recast by
# `synthetic.write_davis_as_vipseg`: OSVOS as ground truth, RVOS as prediction. Expected values: the official VIPSeg
# scripts (as above) on those files.
DAVIS_RVOS_EXPECTED = {
    "vpq-0": (50.97175258489906, 6.797899390025898, 95.14560577977221),
    "vpq-5": (50.4263685052178, 5.745602610947169, 95.10713439948843),
    "vpq-15": (50.40964335053306, 5.788651764229591, 95.03063493683652),
    "vpq-25": (50.26651763217343, 5.5641061111934755, 94.9689291531534),
    "vpq-35": (50.15642400321936, 5.444071306024006, 94.86877670041471),
}
DAVIS_RVOS_STQ_EXPECTED = {"STQ": 0.44770247576133854, "AQ": 0.28303376615017284, "IoU": 0.7081752454104123}


def test_real_davis_masks(davis_clip, tmp_path):
    synthetic.write_davis_as_vipseg(davis_clip, tmp_path, "rvos", range(0, 50, 2))
    result = vpq.evaluate_vipseg(tmp_path / "pred", tmp_path / "gt", workers=2)
    _check_against_official(result, DAVIS_RVOS_EXPECTED)
    for key, value in DAVIS_RVOS_STQ_EXPECTED.items():
        assert result["STQ"][key] == pytest.approx(value, abs=1e-12)
