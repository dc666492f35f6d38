"""BURST JSON: first-frame exemplars, the results writer read back, and malformed results."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tarvis_fast.formats import burst
from tarvis_fast.formats.burst import BurstFormatError
from tarvis_fast.formats.rle import decode_rle, encode_rle

H, W = 6, 8


def _mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _sequence(segmentations):
    return {"id": 1, "dataset": "LaSOT", "seq_name": "cat-1", "width": W, "height": H, "fps": 30,
            "all_image_paths": [f"{t:05d}.jpg" for t in range(6)], "annotated_image_paths": ["00001.jpg", "00003.jpg"],
            "neg_category_ids": [], "not_exhaustive_category_ids": [], "track_category_ids": {"1": 4, "2": 13},
            "segmentations": segmentations}


def _first_frame_file(tmp_path):
    content = {"split": "val", "categories": [], "sequences": [_sequence([
        {"1": {"rle": encode_rle(_mask(0, 2, 0, 2))["counts"], "is_gt": True, "point": {"x": 1, "y": 0}}},
        {"2": {"rle": encode_rle(_mask(3, 5, 3, 8))["counts"], "is_gt": True, "point": [4, 3]}}])]}
    path = tmp_path / "first_frame_annotations.json"
    path.write_text(json.dumps(content))
    return path


def test_exemplars(tmp_path):
    content, sequences = burst.read_burst_annotations(_first_frame_file(tmp_path))
    assert content["split"] == "val" and [s.name for s in sequences] == ["LaSOT/cat-1"]
    first, second = sequences[0].exemplars()
    assert (first.track_id, first.category_id, first.frame_index, first.image_path) == (1, 4, 0, "00001.jpg")
    assert first.point_xy == (1.0, 0.0) and second.point_xy == (4.0, 3.0)  # both point spellings
    assert np.array_equal(decode_rle(second.mask), _mask(3, 5, 3, 8)) and second.frame_index == 1


def test_results_round_trip(tmp_path):
    annotations, gt = burst.read_burst_annotations(_first_frame_file(tmp_path))
    track1 = _mask(1, 3, 1, 4)
    masks = {"LaSOT/cat-1": {
        "00001.jpg": {1: track1, 2: np.zeros((H, W), bool)},   # an empty mask is left out
        "00002.jpg": {1: track1},                               # not an annotated frame: dropped
        "00003.jpg": {2: encode_rle(_mask(0, 1, 0, 1))},
    }}
    burst.write_burst_results(tmp_path / "results.json", annotations, masks)
    content, (seq,) = burst.read_burst_annotations(tmp_path / "results.json")
    assert content["split"] == "val" and seq.annotated_image_paths == ("00001.jpg", "00003.jpg")
    assert [sorted(f) for f in seq.segmentations] == [[1], [2]]
    assert seq.segmentations[0][1]["is_gt"] is False
    assert np.array_equal(decode_rle({"size": [H, W], "counts": seq.segmentations[0][1]["rle"]}), track1)
    burst.check_burst_results(tmp_path / "results.json", gt, "val")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first_frame_annotations.json", "results.json"]


@pytest.mark.parametrize("masks, message", [
    ({"LaSOT/dog-2": {}}, r"sequences not in the annotations: \['LaSOT/dog-2'\]"),
    ({"LaSOT/cat-1": {"00001.jpg": {3: _mask(0, 1, 0, 1)}}}, "cat-1, frame 00001.jpg: unknown track id 3"),
    ({"LaSOT/cat-1": {"00001.jpg": {1: np.ones((2, 2), bool)}}}, r"mask size \[2, 2\] != \[6, 8\]"),
])
def test_writer_errors(tmp_path, masks, message):
    annotations, _ = burst.read_burst_annotations(_first_frame_file(tmp_path))
    with pytest.raises(BurstFormatError, match=message):
        burst.write_burst_results(tmp_path / "results.json", annotations, masks)


def _edit(sequence):
    rle = encode_rle(_mask(0, 1, 0, 1))["counts"]
    sequence["segmentations"] = [{"1": {"rle": rle}}, {"2": {"rle": rle}}]
    return sequence


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(seq_name="dog-2"), "sequence LaSOT/dog-2.*not a ground-truth sequence"),
    (lambda s: s["segmentations"].pop(), "1 segmentation entries for 2 annotated frames"),
    (lambda s: s["segmentations"][1].update({"7": s["segmentations"][1]["2"]}),
     "frame 00003.jpg: track id 7 is not in track_category_ids"),
    (lambda s: s.update(annotated_image_paths=["00003.jpg", "00001.jpg"]), "not in the video's frame order"),
    (lambda s: s.update(annotated_image_paths=["00001.jpg", "00009.jpg"]), "frame 00009.jpg: not a frame"),
    (lambda s: s["track_category_ids"].update({"1": 5}), "track 1 has category 5, the ground truth 4"),
    (lambda s: s["segmentations"][0]["1"].update(rle=None), "frame 00001.jpg: track 1 has no RLE string"),
])
def test_malformed_results(tmp_path, change, message):
    gt = burst.read_burst_annotations(_first_frame_file(tmp_path))[1]
    sequence = _edit(_sequence([]))
    change(sequence)
    (tmp_path / "results.json").write_text(json.dumps({"split": "val", "sequences": [sequence]}))
    with pytest.raises(BurstFormatError, match=f"results.json.*{message}"):
        burst.check_burst_results(tmp_path / "results.json", gt, "val")


def test_results_of_another_split(tmp_path):
    gt = burst.read_burst_annotations(_first_frame_file(tmp_path))[1]
    (tmp_path / "results.json").write_text(json.dumps({"split": "test", "sequences": []}))
    with pytest.raises(BurstFormatError, match="split 'test' but the ground truth is 'val'"):
        burst.check_burst_results(tmp_path / "results.json", gt, "val")
