"""YouTube-VIS / OVIS json: results writer and reader round trips, the upload zip, and the readers' named errors."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tarvis_fast.formats.rle import decode_rle, encode_rle
from tarvis_fast.formats.ytvis import (
    PredictedTrack,
    Video,
    read_ground_truth,
    read_results,
    track_from_masks,
    write_results,
    write_upload_zip,
)

VIDEOS = {3: Video(3, 5, 6, 3)}


def masks_of(seed: int, frames: int = 3) -> np.ndarray:
    masks = np.random.default_rng(seed).random((frames, 5, 6)) > 0.5
    masks[1] = False  # an empty frame
    return masks


def test_results_round_trip(tmp_path):
    masks = masks_of(0)
    tracks = [track_from_masks(3, 2, 0.75, masks), PredictedTrack(3, 1, 0.5, [None, encode_rle(masks[0]), None])]
    assert tracks[0].segmentations[1] is None  # empty frames are written as null
    write_results(tmp_path / "results.json", tracks)
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw[0]["video_id"] == 3 and raw[0]["category_id"] == 2 and raw[0]["score"] == 0.75
    assert isinstance(raw[0]["segmentations"][0]["counts"], str) and raw[0]["segmentations"][1] is None
    read = read_results(tmp_path / "results.json", VIDEOS, [1, 2])
    assert [(t.video_id, t.category_id, t.score) for t in read] == [(3, 2, 0.75), (3, 1, 0.5)]
    for t in (0, 2):
        np.testing.assert_array_equal(decode_rle(read[0].segmentations[t]), masks[t])
    np.testing.assert_array_equal(decode_rle(read[1].segmentations[1]), masks[0])
    assert read[1].segmentations[0] is None
    # Writing what was read gives the same file content.
    write_results(tmp_path / "again.json", read)
    assert json.loads((tmp_path / "again.json").read_text()) == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "results.json"]


def test_upload_zip_holds_results_json_at_its_root(tmp_path):
    write_results(tmp_path / "results.json", [track_from_masks(3, 2, 0.75, masks_of(1))])
    write_upload_zip(tmp_path / "results.json", tmp_path / "results.zip")
    with zipfile.ZipFile(tmp_path / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
        assert archive.read("results.json") == (tmp_path / "results.json").read_bytes()


def square() -> np.ndarray:
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    return mask


def gt_data(**annotation) -> dict:
    """One video, one annotation: frame 0 the square as uncompressed RLE, frame 1 as compressed RLE, frame 2 none.
    Uncompressed counts, column-major: columns 0-1 and row 0 of column 2 are 11 zeros, rows 1-2 two ones,
    rows 3-4 of column 2 and row 0 of column 3 three zeros, two ones, then 2 + 10 zeros."""
    uncompressed = {"size": [5, 6], "counts": [11, 2, 3, 2, 12]}
    base = {"id": 1, "video_id": 3, "category_id": 1, "iscrowd": 0,
            "segmentations": [uncompressed, encode_rle(square()), None], "areas": [4, 4, None],
            "occlusion": ["no_occlusion", "severe_occlusion", None]}
    return {"videos": [{"id": 3, "height": 5, "width": 6, "length": 3}],
            "categories": [{"id": 2, "name": "b"}, {"id": 1, "name": "a"}],
            "annotations": [{**base, **annotation}]}


def test_ground_truth_reads_compressed_and_uncompressed_rle(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(gt_data()))
    gt = read_ground_truth(tmp_path / "gt.json", occlusion=True)
    assert gt.videos == VIDEOS and gt.category_ids == [1, 2]
    (track,) = gt.tracks
    np.testing.assert_array_equal(decode_rle(track.segmentations[0]), square())  # from uncompressed counts
    np.testing.assert_array_equal(decode_rle(track.segmentations[1]), square())  # from compressed counts
    assert track.segmentations[2] is None and track.occlusion == ["no_occlusion", "severe_occlusion", None]
    assert read_ground_truth(tmp_path / "gt.json").tracks[0].occlusion is None


@pytest.mark.parametrize("annotation, occlusion, message", [
    ({"video_id": 9}, False, r"annotations\[0\]: unknown video_id 9"),
    ({"category_id": 5}, False, r"annotations\[0\]: unknown category_id 5"),
    ({"segmentations": [None]}, False,
     r"annotations\[0\]: 'segmentations' must list one entry per frame of video 3 \(3\), got a list of 1"),
    ({"segmentations": [None, {"size": [6, 5], "counts": "0"}, None]}, False,
     r"annotations\[0\] frame 1: mask size \[6, 5\] \(H, W\), but video 3 is \[5, 6\]"),
    ({"areas": None}, False, r"annotations\[0\]: 'areas' must list one entry per frame of video 3 \(3\), got NoneType"),
    ({"occlusion": ["no_occlusion", "partly", None]}, True, r"annotations\[0\]: unknown occlusion levels \['partly'\]"),
    ({"occlusion": [None, None, None]}, True, r"annotations\[0\]: no frame has an occlusion level"),
])
def test_ground_truth_errors_name_the_entry(tmp_path, annotation, occlusion, message):
    (tmp_path / "gt.json").write_text(json.dumps(gt_data(**annotation)))
    with pytest.raises(ValueError, match=r"gt\.json: " + message):
        read_ground_truth(tmp_path / "gt.json", occlusion=occlusion)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json: not found"):
        read_ground_truth(tmp_path / "nope.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"list\.json: expected a json object"):
        read_ground_truth(tmp_path / "list.json")
    (tmp_path / "obj.json").write_text('{"videos": []}')
    with pytest.raises(ValueError, match=r"obj\.json: missing categories, annotations"):
        read_ground_truth(tmp_path / "obj.json")
    with pytest.raises(ValueError, match=r"obj\.json: expected a json list of tracks, got dict"):
        read_results(tmp_path / "obj.json", VIDEOS, [1])
    with pytest.raises(ValueError, match=r"masks must be \(T, H, W\)"):
        track_from_masks(3, 1, 0.5, np.zeros((5, 6), bool))
