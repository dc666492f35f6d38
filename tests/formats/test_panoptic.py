"""Panoptic PNG + JSON formats (Cityscapes-VPS, VIPSeg): writers read back by the readers, and malformed files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.formats import panoptic
from tarvis_fast.formats.panoptic import Category, PanopticFormatError, Segment

CATS = {
    0: Category(0, "road", False, (128, 64, 128)),
    1: Category(1, "sky", False, (70, 130, 180)),
    2: Category(2, "car", True, (0, 0, 142)),
}


def test_rgb2id_by_hand_and_round_trip():
    # id = R + 256 G + 65536 B: (1, 2, 3) -> 1 + 512 + 196608 = 197121
    assert panoptic.rgb2id(np.array([[[1, 2, 3]]], np.uint8))[0, 0] == 197121
    ids = np.array([[0, 1, 256, 65536], [197121, 2**24 - 1, 7, 300]], np.uint32)
    assert np.array_equal(panoptic.rgb2id(panoptic.id2rgb(ids)), ids)
    with pytest.raises(ValueError, match="segment ids"):
        panoptic.id2rgb(np.array([2**24]))


def test_png_round_trip_is_atomic(tmp_path):
    ids = np.arange(12, dtype=np.uint32).reshape(3, 4) * 70001
    panoptic.write_panoptic_png(tmp_path / "a.png", ids)
    assert np.array_equal(panoptic.read_panoptic_png(tmp_path / "a.png"), ids)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind


def test_read_refuses_non_rgb(tmp_path):
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(PanopticFormatError, match="gray.png.*RGB"):
        panoptic.read_panoptic_png(tmp_path / "gray.png")


def test_encode_panoptic_video_by_hand():
    # frame 0: road | car 1 | car 2 | void ; frame 1: road | car 2 | sky | car 1
    semantic = np.array([[[0, 2, 2, 255]], [[0, 2, 1, 2]]])
    instance = np.array([[[5, 1, 2, 0]], [[9, 2, 0, 1]]])
    ids, segments = panoptic.encode_panoptic_video(semantic, instance, CATS, seed=0)
    road, sky = (int(panoptic.rgb2id(np.array(CATS[c].color, np.uint8))) for c in (0, 1))
    car_base = int(panoptic.rgb2id(np.array(CATS[2].color, np.uint8)))
    # stuff keeps its category colour whatever its instance ids; the first car (instance 1) gets the base colour,
    # the second a different colour within +-30 of it; each car keeps its id from frame to frame; void is 0
    assert ids[0, 0, 0] == ids[1, 0, 0] == road and ids[1, 0, 2] == sky and ids[0, 0, 3] == 0
    car1, car2 = ids[0, 0, 1], ids[0, 0, 2]
    assert car1 == car_base and car2 != car1 and ids[1, 0, 3] == car1 and ids[1, 0, 1] == car2
    assert np.all(np.abs(panoptic.id2rgb(car2).astype(int) - np.array(CATS[2].color)) <= 30)
    assert segments[0] == sorted([Segment(road, 0, False, 1), Segment(int(car1), 2, False, 1),
                                  Segment(int(car2), 2, False, 1)], key=lambda s: s.id)
    assert {s.id: s.area for s in segments[1]} == {road: 1, sky: 1, int(car1): 1, int(car2): 1}


def test_encode_rejects_unknown_class():
    with pytest.raises(ValueError, match=r"\[7\]"):
        panoptic.encode_panoptic_video(np.full((1, 2, 2), 7), np.zeros((1, 2, 2), int), CATS)


def _two_videos():
    semantic = np.array([[[0, 0, 2, 2], [1, 1, 2, 255]]] * 2)
    instance = np.array([[[0, 0, 1, 1], [0, 0, 1, 0]]] * 2)
    return panoptic.encode_panoptic_video(semantic, instance, CATS)


def _write_cityscapes(tmp_path):
    ids, segments = _two_videos()
    frames = [(f"{v:04d}_{t:04d}_x", ids[t % 2], segments[t % 2])
              for v in range(2) for t in range(panoptic.CITYSCAPES_VPS_FRAMES_PER_VIDEO)]
    panoptic.write_cityscapes_vps_gt(tmp_path / "gt", CATS, frames)
    writer = panoptic.CityscapesVpsPredictionWriter(tmp_path / "pred")
    for name, frame_ids, frame_segments in frames:
        writer.add_frame(name, frame_ids, frame_segments)
    writer.close()
    return frames


def test_cityscapes_vps_round_trip(tmp_path):
    frames = _write_cityscapes(tmp_path)
    gt = panoptic.read_cityscapes_vps_gt(tmp_path / "gt")
    assert list(gt.categories.values()) == list(CATS.values())
    assert [v.name for v in gt.videos] == ["0000", "0001"] and all(len(v.frames) == 6 for v in gt.videos)
    first = gt.videos[0].frames[0]
    assert first.png == tmp_path / "gt" / "panoptic_video" / "0000_0000_x_final_mask.png"
    assert first.segments == tuple(frames[0][2])
    pred = panoptic.read_cityscapes_vps_predictions(tmp_path / "pred", gt)
    frame = pred[1].frames[2]
    assert frame.png == tmp_path / "pred" / "pan_pred" / "0001_0002_x.png"
    ids = panoptic.load_segment_ids(frame, expected_shape=(2, 4), is_prediction=True)
    assert np.array_equal(ids, frames[8][1])


def _edit_pred_json(tmp_path, edit):
    path = tmp_path / "pred" / "pred.json"
    content = json.loads(path.read_text())
    edit(content["annotations"])
    path.write_text(json.dumps(content))


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop(), "11 annotations for 12 ground-truth frames"),
    (lambda a: a.__setitem__(slice(0, 2), [a[1], a[0]]), "frame 0000_0000_x.*order"),
    (lambda a: a[3]["segments_info"][0].__setitem__("category_id", 9), "frame 0000_0003_x.*unknown category_id 9"),
    (lambda a: a[4]["segments_info"].append(dict(a[4]["segments_info"][0])), "frame 0000_0004_x.*listed twice"),
])
def test_cityscapes_vps_malformed_json(tmp_path, edit, message):
    _write_cityscapes(tmp_path)
    _edit_pred_json(tmp_path, edit)
    gt = panoptic.read_cityscapes_vps_gt(tmp_path / "gt")
    with pytest.raises(PanopticFormatError, match=message):
        panoptic.read_cityscapes_vps_predictions(tmp_path / "pred", gt)


def test_prediction_png_checks(tmp_path):
    _write_cityscapes(tmp_path)
    gt = panoptic.read_cityscapes_vps_gt(tmp_path / "gt")
    frame = panoptic.read_cityscapes_vps_predictions(tmp_path / "pred", gt)[0].frames[1]
    ids = panoptic.read_panoptic_png(frame.png)
    with pytest.raises(PanopticFormatError, match="0000_0001_x.*differs from the ground truth's 5x2"):
        panoptic.load_segment_ids(frame, expected_shape=(2, 5), is_prediction=True)
    panoptic.write_panoptic_png(frame.png, np.where(ids == ids[0, 0], 4242, ids))  # an id unknown to the JSON
    with pytest.raises(PanopticFormatError, match=r"0000_0001_x.*\[4242\] are in the PNG but not in .*pred.json"):
        panoptic.load_segment_ids(frame, is_prediction=True)
    panoptic.write_panoptic_png(frame.png, np.where(ids == ids[0, 0], 0, ids))  # a listed segment vanished
    with pytest.raises(PanopticFormatError, match="0000_0001_x.*in .*pred.json but not in the PNG"):
        panoptic.load_segment_ids(frame, is_prediction=True)
    frame.png.unlink()
    with pytest.raises(PanopticFormatError, match="0000_0001_x.png: panoptic PNG not found"):
        panoptic.load_segment_ids(frame, is_prediction=True)


def test_vipseg_round_trip_and_errors(tmp_path):
    ids, segments = _two_videos()
    names = ["00000.png", "00001.png"]
    panoptic.write_vipseg_gt(tmp_path / "gt", CATS, {"v1": list(zip(names, ids, segments)),
                                                     "v2": list(zip(names[:1], ids[:1], segments[:1]))})
    writer = panoptic.VipsegPredictionWriter(tmp_path / "pred")
    writer.add_video("v1", names, ids, segments)
    writer.add_video("v2", names[:1], ids[:1], segments[:1])
    writer.close()
    gt = panoptic.read_vipseg_gt(tmp_path / "gt")
    assert [(v.name, len(v.frames)) for v in gt.videos] == [("v1", 2), ("v2", 1)]
    assert gt.videos[0].frames[1].png == tmp_path / "gt" / "panomasksRGB" / "v1" / "00001.png"
    pred = panoptic.read_vipseg_predictions(tmp_path / "pred", gt)
    assert pred[0].frames[1].png == tmp_path / "pred" / "pan_pred" / "v1" / "00001.png"
    assert pred[0].frames[1].segments == tuple(segments[1])

    _edit_pred_json(tmp_path, lambda a: a[0]["annotations"].reverse())
    with pytest.raises(PanopticFormatError, match="video v1, frame 00000.png.*'00001.png'.*order"):
        panoptic.read_vipseg_predictions(tmp_path / "pred", gt)
    _edit_pred_json(tmp_path, lambda a: a[0]["annotations"].pop())
    with pytest.raises(PanopticFormatError, match="video 'v1' has 1 predicted frames, the ground truth 2"):
        panoptic.read_vipseg_predictions(tmp_path / "pred", gt)
    _edit_pred_json(tmp_path, lambda a: a.pop(0))
    with pytest.raises(PanopticFormatError, match="no predictions for video 'v1'"):
        panoptic.read_vipseg_predictions(tmp_path / "pred", gt)


def test_writer_rejects_inconsistent_frame(tmp_path):
    ids, segments = _two_videos()
    writer = panoptic.CityscapesVpsPredictionWriter(tmp_path)
    with pytest.raises(ValueError, match="f.png: the id map and the segment list disagree"):
        writer.add_frame("f", ids[0], segments[0][1:])
