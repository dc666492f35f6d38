"""Benchmark readers and result writers on tiny fixtures written here in each benchmark's official layout.

Readers: sequence lists, frames, sizes and references checked against the values the fixtures were built with
(BURST frame sampling worked out by hand below). Writers: results built from known maps, written, read back with
the `formats` readers; DAVIS, Cityscapes-VPS, VIPSeg and YouTube-VIS also through the built-in metric against a
ground truth made from the same maps, where a perfect prediction must score 1.0 / 100.
"""
from __future__ import annotations

import json
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.config import load_config
from tarvis_fast.evaluation.__main__ import evaluate
from tarvis_fast.formats import burst, davis, kitti_step, panoptic, ytvis
from tarvis_fast.formats.rle import decode_rle, encode_rle
from tarvis_fast.datasets import class_names, vocabulary
from tarvis_fast.inference.accumulate import PanopticFrame, VisTrack
from tarvis_fast.inference.propagation import VosFrame
from tarvis_fast.inference.readers import (
    KITTI_STEP_VAL_FRAMES,
    burst_frame_indices,
    cityscapes_vps_image_id,
    open_benchmark,
)
from tarvis_fast.inference.sequences import BenchmarkDataError, ObjectReference, SequenceInfo, select_sequences
from tarvis_fast.inference.writers import open_writer
from tarvis_fast.tasks import Task

IMG, ANN = Path("dataset_images/inference"), Path("dataset_annotations/inference")
H, W = 6, 8


def _cfg(*overrides: str):
    return load_config(overrides=list(overrides))


def _box(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def _write_image(path: Path, shape: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), 90, np.uint8)).save(path)


# ============================================================================================== vocabularies, selection

def test_vocabularies_are_packaged_with_their_class_counts():
    assert resources.files("tarvis_fast").joinpath("vocabularies.json").is_file()
    counts = {"YOUTUBE_VIS": 40, "OVIS": 25, "KITTI_STEP": 19, "CITYSCAPES_VPS": 19, "VIPSEG": 124}
    assert {name: len(class_names(name)) for name in counts} == counts
    # Spot checks against the datasets' category tables (YTVIS-2021 id 1 / 40, OVIS id 1 / 25).
    assert class_names("youtube_vis")[0] == "airplane" and class_names("YOUTUBE_VIS")[39] == "zebra"
    assert class_names("ovis")[0] == "Person" and class_names("ovis")[24] == "Vehicle"
    assert vocabulary("kitti_step").thing_classes == (11, 13)
    assert vocabulary("cityscapes_vps").thing_classes == tuple(range(11, 19))
    things = vocabulary("vipseg").thing_classes
    assert len(things) == 58 and things[:4] == (2, 4, 8, 10) and class_names("vipseg")[2] == "door"
    categories = vocabulary("vipseg").categories()
    assert categories[0].color == (120, 120, 120) and not categories[0].isthing and categories[123].isthing
    with pytest.raises(ValueError, match="davis"):
        class_names("davis")
    with pytest.raises(ValueError, match="no colours"):
        vocabulary("ovis").categories()


def _fake_sequences(n: int) -> list[SequenceInfo]:
    return [SequenceInfo(f"s{i}", [Path(f"{i}.jpg")], ["0"], H, W) for i in range(n)]


def _names(sequences: list[SequenceInfo]) -> list[str]:
    return [s.name for s in sequences]


def test_select_sequences_by_name_and_shard():
    sequences = _fake_sequences(5)
    assert _names(select_sequences(sequences, names=["s3", "s1"])) == ["s1", "s3"]  # benchmark order
    # ceil(5 / 2) = 3 per shard: shard 1 = s0..s2, shard 2 = s3, s4; ceil(5 / 3) = 2: shard 3 = s4 alone.
    assert _names(select_sequences(sequences, seq_split="1/2")) == ["s0", "s1", "s2"]
    assert _names(select_sequences(sequences, seq_split="2/2")) == ["s3", "s4"]
    assert _names(select_sequences(sequences, seq_split="3/3")) == ["s4"]
    assert _names(select_sequences(sequences, names=["s0", "s2", "s4"], seq_split="2/2")) == ["s4"]
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(ValueError, match="--seq_split"):
            select_sequences(sequences, seq_split=bad)
    with pytest.raises(ValueError, match="s9"):
        select_sequences(sequences, names=["s9"])


# ============================================================================================== YouTube-VIS / OVIS

def _vis_workspace(root: Path, annotation: Path, images: Path = IMG / "youtube_vis_2021") -> dict:
    (root / images).mkdir(parents=True, exist_ok=True)
    videos = [{"id": 7, "height": H, "width": W, "length": 3, "file_names": [f"vidA/{t:05d}.jpg" for t in range(3)]},
              {"id": 9, "height": H, "width": W, "length": 2, "file_names": [f"vidB/{t:05d}.jpg" for t in range(2)]}]
    _write_json(root / annotation, {"videos": videos, "categories": [{"id": 1, "name": "airplane"}],
                                    "annotations": None})
    return {"vidA": 7, "vidB": 9}


@pytest.mark.parametrize("name, annotation, images", [
    ("YOUTUBE_VIS", ANN / "youtube_vis/valid_2021.json", IMG / "youtube_vis_2021"),
    ("OVIS", ANN / "ovis/valid.json", IMG / "ovis"),
])
def test_vis_reader(tmp_path, name, annotation, images):
    _vis_workspace(tmp_path, annotation, images)
    benchmark = open_benchmark(name, _cfg(), workspace=tmp_path)
    assert (benchmark.task, benchmark.split, benchmark.thing_classes) == (Task.VIS, "val", ())
    assert benchmark.ground_truth is None
    first, second = benchmark.sequences()
    assert (first.name, second.name) == ("vidA", "vidB")
    assert first.frames == [tmp_path / images / f"vidA/{t:05d}.jpg" for t in range(3)]
    assert first.frame_names == ["00000", "00001", "00002"] and (first.height, first.width) == (H, W)
    assert (first.meta["video_id"], second.meta["video_id"]) == (7, 9) and list(first.references) == []


def _masks(video: str) -> list[np.ndarray]:
    """Per track (T, H, W) masks of the VIS fixture: vidA two tracks over 3 frames, vidB one over 2."""
    if video == "vidA":
        return [np.stack([_box(0, 3, 0, 4), _box(0, 3, 1, 5), np.zeros((H, W), bool)]),
                np.stack([_box(3, 6, 4, 8)] * 3)]
    return [np.stack([_box(1, 4, 2, 6), _box(2, 5, 2, 6)])]


def _vis_tracks(video: str) -> list[VisTrack]:
    return [VisTrack(score=0.9 - 0.1 * i, category_id=1,
                     segmentations=[encode_rle(m) if m.any() else None for m in masks])
            for i, masks in enumerate(_masks(video))]


def test_vis_writer_shards_merge_and_score_perfectly(tmp_path, caplog):
    video_ids = _vis_workspace(tmp_path / "ws", ANN / "youtube_vis/valid_2021.json")
    out = tmp_path / "out"
    benchmark = open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path / "ws")
    first_shard, second_shard = (select_sequences(benchmark.sequences(), seq_split=f"{i}/2") for i in (1, 2))

    writer = open_writer(benchmark, out)
    writer.write_sequence(first_shard[0], _vis_tracks("vidA"))
    assert writer.is_done(first_shard[0]) and not writer.is_done(second_shard[0])
    assert writer.close() == [] and writer.missing() == ["vidB"] and not (out / "results.json").exists()
    assert "YOUTUBE_VIS: 1 of 2 sequences have no results yet (vidB)" in caplog.text

    other = open_writer(open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path / "ws"), out)  # another process
    other.write_sequence(second_shard[0], _vis_tracks("vidB"))
    assert other.close() == [out / "results.json", out / "results.zip"] and other.prediction_path == out / "results.json"
    with zipfile.ZipFile(out / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
    assert writer.close() == [out / "results.json", out / "results.zip"]  # any process may close again

    videos = {v: ytvis.Video(v, H, W, 3 if v == 7 else 2) for v in video_ids.values()}
    tracks = ytvis.read_results(out / "results.json", videos, [1])
    assert [(t.video_id, t.score) for t in tracks] == [(7, 0.9), (7, 0.8), (9, 0.9)]
    expected = _masks("vidA") + _masks("vidB")
    for track, masks in zip(tracks, expected):
        decoded = [np.zeros((H, W), bool) if rle is None else decode_rle(rle) for rle in track.segmentations]
        np.testing.assert_array_equal(np.stack(decoded), masks)

    # Ground truth made of the same masks: every track found at IoU 1, so AP = 1.
    annotations = [{"id": i + 1, "video_id": video_id, "category_id": 1, "iscrowd": 0,
                    "segmentations": [encode_rle(m) if m.any() else None for m in masks],
                    "areas": [int(m.sum()) or None for m in masks]}
                   for i, (video_id, masks) in enumerate([(7, expected[0]), (7, expected[1]), (9, expected[2])])]
    gt = _write_json(tmp_path / "gt.json", {
        "videos": [{"id": v.id, "height": H, "width": W, "length": v.length} for v in videos.values()],
        "categories": [{"id": 1, "name": "airplane"}], "annotations": annotations})
    assert evaluate("ytvis", out, gt, workers=1)["AP"] == pytest.approx(1.0)

    writer.part_path(second_shard[0]).write_text("[{")
    with pytest.raises(ValueError, match=r"parts/vidB.json: damaged part of sequence vidB"):
        writer.close()


# ============================================================================================== DAVIS

def _label_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    davis.write_label_png(path, labels)


def _davis_maps(sequence: str) -> np.ndarray:
    """Ground-truth id maps (T, H, W). seqA: objects 1, 2 from frame 0, a void patch, object 3 appearing in frame
    2 (not an object: DAVIS counts objects in the first frame); seqB: object 1, and object 2 from frame 3."""
    maps = np.zeros((5, H, W), np.uint8)
    for t in range(5):
        maps[t][_box(0, 3, t % 3, 3 + t % 3)] = 1
        if sequence == "seqA":
            maps[t][_box(4, 6, 0, 3)] = 2
            maps[t, 5, 7] = 255
            if t >= 2:
                maps[t][_box(4, 6, 5, 7)] = 3
        elif t >= 3:
            maps[t][_box(4, 6, 4, 8)] = 2
    return maps


def _davis_workspace(root: Path) -> None:
    for sequence in ("seqA", "seqB"):
        maps = _davis_maps(sequence)
        for t in range(5):
            _write_image(root / IMG / "davis" / sequence / f"{t:05d}.jpg")
        # seqA: a PNG for every frame (full ground truth); seqB: only the frames that give a new object.
        for t in (range(5) if sequence == "seqA" else (0, 3)):
            _label_png(root / ANN / "davis/Annotations" / sequence / f"{t:05d}.png", maps[t])
    (root / ANN / "davis/ImageSet_val.txt").write_text("seqA\n")
    (root / ANN / "davis/ImageSet_testdev.txt").write_text("seqA\nseqB\n")


def _vos_frames(maps: np.ndarray, objects: list[int]) -> list[VosFrame]:
    return [VosFrame(frame_index=t, size=(H, W), masks={i: m == i for i in objects if (m == i).any()})
            for t, m in enumerate(maps)]


def _davis_root(root: Path, sequence: str, maps: np.ndarray) -> None:
    """The official DAVIS-2017 layout the evaluator reads."""
    for t, labels in enumerate(maps):
        _write_image(root / "JPEGImages/480p" / sequence / f"{t:05d}.jpg")
        _label_png(root / "Annotations/480p" / sequence / f"{t:05d}.png", labels)
    (root / "ImageSets/2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/2017/val.txt").write_text(f"{sequence}\n")


def test_davis_reader_references(tmp_path):
    _davis_workspace(tmp_path)
    (seq_a,) = open_benchmark("DAVIS", _cfg(), workspace=tmp_path).sequences()
    assert seq_a.name == "seqA" and len(seq_a.frames) == 5 and (seq_a.height, seq_a.width) == (H, W)
    assert seq_a.frames[0] == tmp_path / IMG / "davis/seqA/00000.jpg"
    maps = _davis_maps("seqA")
    # Full folder: only the first PNG counts; object 3 (frame 2) and void 255 are no references.
    assert [(r.object_id, r.frame_index, r.point) for r in seq_a.references] == [(1, 0, None), (2, 0, None)]
    for reference in seq_a.references:
        np.testing.assert_array_equal(reference.mask, maps[0] == reference.object_id)

    testdev = open_benchmark("DAVIS", _cfg(), workspace=tmp_path, split="testdev")
    seq_b = testdev.sequences()[1]
    # Sparse folder (frames 0 and 3): object 2 is first given in frame 3, object 1 keeps its frame-0 reference.
    assert [(r.object_id, r.frame_index) for r in seq_b.references] == [(1, 0), (2, 3)]
    np.testing.assert_array_equal(seq_b.references[1].mask, _davis_maps("seqB")[3] == 2)


def test_davis_writer_and_metric(tmp_path):
    _davis_workspace(tmp_path / "ws")
    maps = _davis_maps("seqA")
    _davis_root(tmp_path / "gt", "seqA", maps)
    benchmark = open_benchmark("DAVIS", _cfg(), workspace=tmp_path / "ws", paths={"ground_truth": tmp_path / "gt"})
    assert benchmark.ground_truth == tmp_path / "gt" and benchmark.metric == "davis"
    writer = open_writer(benchmark, tmp_path / "out")
    (seq,) = benchmark.sequences()
    writer.write_sequence(seq, _vos_frames(maps, [1, 2]))
    assert writer.close() == [tmp_path / "out"]
    written = davis.read_results(tmp_path / "out", "seqA", seq.frame_names, shape=(H, W), max_id=2)
    np.testing.assert_array_equal(written, np.where(np.isin(maps, (1, 2)), maps, 0))
    with Image.open(tmp_path / "out/seqA/00001.png") as image:
        assert image.mode == "P"
    scores = evaluate(benchmark.metric, writer.prediction_path, benchmark.ground_truth, workers=1)
    assert scores["J&F-Mean"] == pytest.approx(1.0) and scores["J-Mean"] == pytest.approx(1.0)


def test_davis_testdev_zip(tmp_path):
    _davis_workspace(tmp_path / "ws")
    benchmark = open_benchmark("DAVIS", _cfg(), workspace=tmp_path / "ws", split="testdev")
    writer = open_writer(benchmark, tmp_path / "out")
    for seq in benchmark.sequences():
        writer.write_sequence(seq, _vos_frames(_davis_maps(seq.name), [1, 2]))
    assert writer.close() == [tmp_path / "out", tmp_path / "out/results.zip"]
    with zipfile.ZipFile(tmp_path / "out/results.zip") as archive:
        assert sorted(archive.namelist()) == [f"{s}/{t:05d}.png" for s in ("seqA", "seqB") for t in range(5)]


def test_writer_refuses_incomplete_results_and_marks_nothing_done(tmp_path):
    _davis_workspace(tmp_path / "ws")
    benchmark = open_benchmark("DAVIS", _cfg(), workspace=tmp_path / "ws")
    (seq,) = benchmark.sequences()
    writer = open_writer(benchmark, tmp_path / "out")
    frames = _vos_frames(_davis_maps("seqA"), [1, 2])
    with pytest.raises(ValueError, match="stop after 3 of 5 frames"):
        writer.write_sequence(seq, frames[:3])
    with pytest.raises(ValueError, match="frame 2 where frame 1"):
        writer.write_sequence(seq, [frames[0], frames[2]])
    with pytest.raises(TypeError, match="VosFrame"):
        writer.write_sequence(seq, [PanopticFrame(0, np.zeros((H, W), np.int32), np.zeros((H, W), np.int32), {})])
    assert not writer.is_done(seq) and writer.missing() == ["seqA"]
    other = SequenceInfo("seqZ", [Path("a.jpg")], ["a"], H, W)
    with pytest.raises(ValueError, match="seqZ"):
        writer.write_sequence(other, [])
    writer.write_sequence(seq, frames)
    assert writer.is_done(seq)
    with pytest.raises(ValueError, match="stop after"):  # a failed rewrite leaves the sequence to do again
        writer.write_sequence(seq, frames[:1])
    assert not writer.is_done(seq)


# ============================================================================================== BURST

def _burst_sequence(seq_name: str, fps: int, num_frames: int, annotated: list[int], first: dict[int, tuple]):
    """first: track id -> (annotated position, mask, (x, y) point)."""
    segmentations = [{} for _ in annotated]
    for track_id, (position, mask, (x, y)) in first.items():
        segmentations[position][str(track_id)] = {"rle": encode_rle(mask)["counts"], "is_gt": True,
                                                  "point": {"x": x, "y": y}}
    return {"id": len(seq_name), "dataset": "YFCC100M", "seq_name": seq_name, "width": W, "height": H, "fps": fps,
            "all_image_paths": [f"frame{t:04d}.jpg" for t in range(num_frames)],
            "annotated_image_paths": [f"frame{t:04d}.jpg" for t in annotated],
            "neg_category_ids": [], "not_exhaustive_category_ids": [],
            "track_category_ids": {str(k): 10 * k for k in first}, "segmentations": segmentations}


def _burst_workspace(root: Path) -> Path:
    (root / IMG / "burst/val").mkdir(parents=True, exist_ok=True)
    sequences = [
        # fps 6: n = min(10, 4) = 4, round(linspace(0, 6, 6)[:-1]) = round([0, 1.2, 2.4, 3.6, 4.8]) = {0, 1, 2, 4, 5}:
        # frames 3 and 9 are dropped by the sampling, but 9 is annotated and stays -> 13 of 14 frames.
        # Track 5 first appears in annotated frame 9 (sampled index 8).
        _burst_sequence("v_one", 6, 14, [0, 6, 9, 12], {1: (0, _box(0, 3, 0, 3), (1.0, 2.0)),
                                                        5: (2, _box(3, 6, 2, 8), (6.0, 4.0))}),
        # fps 5: n = 3, round([0, 1.25, 2.5, 3.75]) = {0, 1, 2, 4} (2.5 rounds to even): frame 3 dropped.
        _burst_sequence("v_two", 5, 8, [0, 5], {2: (0, _box(1, 5, 1, 5), (3.0, 3.0))}),
    ]
    return _write_json(root / ANN / "burst/first_frame_annotations_val.json",
                       {"split": "val", "categories": [], "sequences": sequences})


def test_burst_frame_sampling_by_hand():
    assert burst_frame_indices(14, 6, []) == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    assert burst_frame_indices(8, 5, [3]) == list(range(8))
    # fps 30: n = 10, round(linspace(0, 30, 12)[:-1]) = {0, 3, 5, 8, 11, 14, 16, 19, 22, 25, 27}
    assert burst_frame_indices(30, 30, []) == [0, 3, 5, 8, 11, 14, 16, 19, 22, 25, 27]
    assert burst_frame_indices(4, 2, []) == [0, 2]   # n = 0: one frame a second
    assert burst_frame_indices(3, 1, []) == [0, 1, 2]


def test_burst_reader_point_and_mask_modes(tmp_path):
    _burst_workspace(tmp_path)
    benchmark = open_benchmark("BURST", _cfg(), workspace=tmp_path)
    one, two = benchmark.sequences()
    assert (one.name, two.name) == ("YFCC100M/v_one", "YFCC100M/v_two")
    assert one.frame_names == [f"frame{t:04d}" for t in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)]
    assert one.frames[3] == tmp_path / IMG / "burst/val/YFCC100M/v_one/frame0004.jpg"
    assert two.frame_names == [f"frame{t:04d}" for t in (0, 1, 2, 4, 5, 6, 7)]
    assert one.meta["annotated"] == {0: "frame0000.jpg", 5: "frame0006.jpg", 8: "frame0009.jpg",
                                     11: "frame0012.jpg"}
    # Points are (y, x): the file's {"x": 1, "y": 2} becomes (2, 1).
    assert [(r.object_id, r.frame_index, r.point, r.mask) for r in one.references] == [
        (1, 0, (2.0, 1.0), None), (5, 8, (4.0, 6.0), None)]

    masked = open_benchmark("BURST", _cfg("--cfg.datasets.BURST.inference.mode", "mask"), workspace=tmp_path)
    references = list(masked.sequences()[0].references)
    assert [(r.object_id, r.frame_index, r.point) for r in references] == [(1, 0, None), (5, 8, None)]
    np.testing.assert_array_equal(references[1].mask, _box(3, 6, 2, 8))


def test_burst_writer_annotated_frames_only(tmp_path):
    annotations = _burst_workspace(tmp_path / "ws")
    benchmark = open_benchmark("BURST", _cfg(), workspace=tmp_path / "ws")
    out = tmp_path / "out"
    expected: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for shard in ("1/2", "2/2"):  # two processes
        writer = open_writer(benchmark, out)
        (seq,) = select_sequences(benchmark.sequences(), seq_split=shard)
        frames = []
        for t in range(len(seq.frames)):
            masks = {1: _box(0, 3, t % 4, t % 4 + 3)} if seq.name.endswith("one") else {2: _box(1, 5, 1, 5)}
            if seq.name.endswith("one") and t >= 8:
                masks[5] = _box(3, 6, 2, 8) if t != 11 else np.zeros((H, W), bool)  # empty: left out
            frames.append(VosFrame(t, (H, W), masks))
            if t in seq.meta["annotated"]:
                expected.setdefault(seq.name, {})[seq.meta["annotated"][t]] = {
                    k: m for k, m in masks.items() if m.any()}
        writer.write_sequence(seq, frames)
        closed = writer.close()
    assert closed == [out / "results.json"]
    content, sequences = burst.read_burst_annotations(out / "results.json")
    _, first_frame = burst.read_burst_annotations(annotations)
    burst.check_burst_results(out / "results.json", first_frame, "val")
    assert content["split"] == "val"
    for seq in sequences:
        assert len(seq.segmentations) == len(seq.annotated_image_paths)
        for image, tracks in zip(seq.annotated_image_paths, seq.segmentations):
            want = expected[seq.name][image]
            assert sorted(tracks) == sorted(want)
            for track_id, entry in tracks.items():
                assert entry["is_gt"] is False
                np.testing.assert_array_equal(decode_rle({"size": [H, W], "counts": entry["rle"]}), want[track_id])


# ============================================================================================== KITTI-STEP

def _kitti_workspace(root: Path, shape: tuple[int, int] = (H, W)) -> None:
    for name, count in KITTI_STEP_VAL_FRAMES.items():
        folder = root / IMG / "kitti_step_val" / name
        folder.mkdir(parents=True)
        _write_image(folder / "000000.png", shape)
        for t in range(1, count):  # only listed, never opened by the reader
            (folder / f"{t:06d}.png").touch()


def test_kitti_step_reader_and_writer(tmp_path):
    _kitti_workspace(tmp_path / "ws", (30, 40))
    benchmark = open_benchmark("KITTI_STEP", _cfg(), workspace=tmp_path / "ws")
    sequences = benchmark.sequences()
    assert [s.name for s in sequences] == list(kitti_step.VAL_SEQUENCES)
    assert [len(s.frames) for s in sequences] == [233, 270, 800, 390, 294, 340, 106, 209, 339]
    seq = sequences[6]  # 0014, the shortest
    assert seq.frame_names[:2] == ["000000", "000001"] and (seq.height, seq.width) == (30, 40)
    assert benchmark.thing_classes == (11, 13) and benchmark.task is Task.VPS

    writer = open_writer(benchmark, tmp_path / "out")
    semantic = np.zeros((30, 40), np.int32)
    semantic[:, 20:] = 13
    frames = []
    for t in range(len(seq.frames)):
        instance = np.zeros((30, 40), np.int32)
        instance[:, 20:30] = 1234          # accumulator track ids, renumbered 1, 2 by first appearance
        instance[:, 30:] = 57 if t else 0
        frames.append(PanopticFrame(t, semantic, instance, {}))
    writer.write_sequence(seq, frames)
    assert writer.is_done(seq) and writer.close() == [] and len(writer.missing()) == 8
    read_semantic, read_instance = kitti_step.read_kitti_step_png(tmp_path / "out/0014/000000.png")
    np.testing.assert_array_equal(read_semantic, semantic)
    assert set(np.unique(read_instance[:, 20:30])) == {1} and set(np.unique(read_instance[:, 30:])) == {0}
    _, read_instance = kitti_step.read_kitti_step_png(tmp_path / "out/0014/000105.png")
    assert set(np.unique(read_instance[:, 30:])) == {2}

    crowded = np.arange(30 * 40, dtype=np.int32).reshape(30, 40) + 1    # 1200 tracks in one frame
    with pytest.raises(ValueError, match="more than 999 tracks"):
        writer.write_sequence(seq, [PanopticFrame(0, semantic, crowded, {})])


def test_kitti_step_reader_checks_the_frame_list(tmp_path):
    _kitti_workspace(tmp_path)
    (tmp_path / IMG / "kitti_step_val/0016/000208.png").unlink()
    with pytest.raises(BenchmarkDataError, match=r"0016.*000000.png \.\.\. 000208.png \(209\), found 208.*--images"):
        open_benchmark("KITTI_STEP", _cfg(), workspace=tmp_path)


# ============================================================================================== Cityscapes-VPS

# Cityscapes-VPS videos 5 and 15 of the validation set: frame f (1-based) of video 5 is frankfurt_000000_{1731 + f},
# of video 15 frankfurt_000000_{7345 + f}. Expected image ids from the original's packaged
# cityscapes_vps_val_filename_mapping.json (frankfurt_000000_001736 -> 0005_0025_..., 007350 -> 0015_0085_...).
CVPS_VIDEOS = {5: ("frankfurt_000000", 1731), 15: ("frankfurt_000000", 7345)}
CVPS_H, CVPS_W = 6, 10


def _cvps_workspace(root: Path) -> None:
    (root / IMG / "cityscapes_vps_val").mkdir(parents=True)
    images = [{"id": video * 10000 + f, "file_name": f"{city}_{offset + f:06d}_leftImg8bit.png",
               "height": CVPS_H, "width": CVPS_W}
              for video, (city, offset) in CVPS_VIDEOS.items() for f in range(1, 31)]
    _write_json(root / ANN / "cityscapes_vps/im_all_info_val_city_vps.json", {"images": images, "categories": []})


def test_cityscapes_vps_image_ids_match_the_official_names():
    assert cityscapes_vps_image_id(5, 5, "frankfurt_000000_001736_leftImg8bit.png") == \
        "0005_0025_frankfurt_000000_001736"
    assert cityscapes_vps_image_id(15, 5, "frankfurt_000000_007350_leftImg8bit.png") == \
        "0015_0085_frankfurt_000000_007350"
    assert cityscapes_vps_image_id(495, 30, "munster_000168_000029_leftImg8bit.png") == \
        "0495_2970_munster_000168_000029"
    with pytest.raises(ValueError, match="not an annotated frame"):
        cityscapes_vps_image_id(5, 7, "x_leftImg8bit.png")


def test_cityscapes_vps_reader_sparse_and_dense(tmp_path):
    _cvps_workspace(tmp_path)
    first, second = open_benchmark("CITYSCAPES_VPS", _cfg(), workspace=tmp_path).sequences()
    assert (first.name, second.name) == ("0005", "0015")
    assert first.frame_names == [f"frankfurt_000000_{1731 + f:06d}_leftImg8bit" for f in range(5, 31, 5)]
    assert first.frames[0] == tmp_path / IMG / "cityscapes_vps_val/frankfurt_000000_001736_leftImg8bit.png"
    assert second.meta["image_ids"][0] == "0015_0085_frankfurt_000000_007350"
    assert second.meta["image_ids"][5] == "0015_0090_frankfurt_000000_007375"
    assert (first.height, first.width) == (CVPS_H, CVPS_W)

    dense = open_benchmark("CITYSCAPES_VPS", _cfg("--cfg.datasets.CITYSCAPES_VPS.inference.sparse_frames", "false"),
                           workspace=tmp_path).sequences()[0]
    assert len(dense.frames) == 30
    assert [i for i, image_id in enumerate(dense.meta["image_ids"]) if image_id] == [4, 9, 14, 19, 24, 29]


def _panoptic_video(frames: int, height: int, width: int, thing: int, stuff: tuple[int, int], seed: int):
    """(semantic, instance) (T, H, W): two stuff bands, two moving thing tracks (ids 40 + seed, 3)."""
    semantic = np.full((frames, height, width), stuff[0], np.int32)
    semantic[:, height // 2:] = stuff[1]
    instance = np.zeros_like(semantic)
    for t in range(frames):
        for track, x0 in ((40 + seed, t % 3), (3, 6)):
            semantic[t, 1:4, x0:x0 + 3] = thing
            instance[t, 1:4, x0:x0 + 3] = track
    return semantic, instance


def _panoptic_frames(semantic: np.ndarray, instance: np.ndarray) -> list[PanopticFrame]:
    return [PanopticFrame(t, s, i, {}) for t, (s, i) in enumerate(zip(semantic, instance))]


def test_cityscapes_vps_writer_and_metric(tmp_path):
    _cvps_workspace(tmp_path / "ws")
    benchmark = open_benchmark("CITYSCAPES_VPS", _cfg(), workspace=tmp_path / "ws")
    assert benchmark.thing_classes == tuple(range(11, 19))
    out = tmp_path / "out"
    categories = vocabulary("CITYSCAPES_VPS").categories()
    gt_frames = []
    for seq, seed in zip(reversed(benchmark.sequences()), (1, 2)):  # the write order does not matter
        semantic, instance = _panoptic_video(6, CVPS_H, CVPS_W, 13, (0, 10), seed)
        open_writer(benchmark, out).write_sequence(seq, _panoptic_frames(semantic, instance))
        ids, segments = panoptic.encode_panoptic_video(semantic, instance, categories)
        gt_frames += list(zip(seq.meta["image_ids"], ids, segments))
    assert open_writer(benchmark, out).close() == [out / "pred.json", out / "pan_pred"]
    panoptic.write_cityscapes_vps_gt(tmp_path / "gt", categories, sorted(gt_frames, key=lambda f: f[0]))

    gt = panoptic.read_cityscapes_vps_gt(tmp_path / "gt")
    predictions = panoptic.read_cityscapes_vps_predictions(out, gt)
    for video in predictions:
        for frame in video.frames:
            panoptic.load_segment_ids(frame, expected_shape=(CVPS_H, CVPS_W), is_prediction=True)
    result = evaluate(benchmark.metric, out, tmp_path / "gt", workers=1)
    assert (result["vpq_all"], result["vpq_thing"], result["vpq_stuff"]) == pytest.approx((100.0, 100.0, 100.0))


def test_cityscapes_vps_reader_errors(tmp_path):
    _cvps_workspace(tmp_path)
    source = tmp_path / ANN / "cityscapes_vps/im_all_info_val_city_vps.json"
    content = json.loads(source.read_text())
    content["images"] = [i for i in content["images"] if i["id"] != 150020]
    source.write_text(json.dumps(content))
    with pytest.raises(BenchmarkDataError, match=r"video 15 lacks annotated frames \[20\]"):
        open_benchmark("CITYSCAPES_VPS", _cfg(), workspace=tmp_path)


# ============================================================================================== VIPSeg

def _vipseg_workspace(root: Path) -> None:
    (root / IMG / "vipseg").mkdir(parents=True)
    videos = [{"video_id": name, "images": [{"id": f"{t:08d}", "file_name": f"{t:08d}.png", "height": H, "width": W}
                                            for t in range(length)]}
              for name, length in (("12_abc", 9), ("7_xyz", 8))]  # VIPSeg's VPQ windows go up to 8 frames
    _write_json(root / ANN / "vipseg/val.json", {"videos": videos, "annotations": [], "categories": []})


def test_vipseg_reader_writer_and_metric(tmp_path):
    _vipseg_workspace(tmp_path / "ws")
    benchmark = open_benchmark("VIPSEG", _cfg(), workspace=tmp_path / "ws")
    first, second = benchmark.sequences()
    assert (first.name, second.name) == ("12_abc", "7_xyz")
    assert first.frames[1] == tmp_path / "ws" / IMG / "vipseg/12_abc/00000001.jpg"
    assert first.meta["file_names"] == [f"{t:08d}.png" for t in range(9)] and len(second.frames) == 8
    assert len(benchmark.thing_classes) == 58

    out = tmp_path / "out"
    categories = vocabulary("VIPSEG").categories()
    writer = open_writer(benchmark, out)
    gt_videos = {}
    for seq, seed in zip(benchmark.sequences(), (1, 2)):
        # thing 48 (car) shares its base colour with stuff 6: its segments must still get distinct ids
        semantic, instance = _panoptic_video(len(seq.frames), H, W, 48, (0, 6), seed)
        writer.write_sequence(seq, _panoptic_frames(semantic, instance))
        ids, segments = panoptic.encode_panoptic_video(semantic, instance, categories)
        gt_videos[seq.name] = list(zip(seq.meta["file_names"], ids, segments))
    assert writer.close() == [out / "pred.json", out / "pan_pred"]
    assert (out / "pan_pred/7_xyz/00000001.png").is_file()
    panoptic.write_vipseg_gt(tmp_path / "gt", categories, gt_videos)
    result = evaluate(benchmark.metric, out, tmp_path / "gt", workers=1)
    assert (result["vpq_all"], result["vpq_thing"], result["vpq_stuff"]) == pytest.approx((100.0, 100.0, 100.0))


# ============================================================================================== paths and errors

def test_missing_workspace_and_files_name_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("TARVIS_WORKSPACE_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"TARVIS_WORKSPACE_DIR.*--images"):
        open_benchmark("OVIS", _cfg())
    with pytest.raises(FileNotFoundError, match=r"ovis/valid.json.*--annotations"):
        open_benchmark("OVIS", _cfg(), workspace=tmp_path, paths={"images": tmp_path})
    monkeypatch.setenv("TARVIS_WORKSPACE_DIR", str(tmp_path))
    (tmp_path / IMG / "davis").mkdir(parents=True)
    (tmp_path / ANN / "davis/Annotations").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"ImageSet_val.txt.*--image_set"):
        open_benchmark("DAVIS", _cfg())
    (tmp_path / ANN / "davis/ImageSet_val.txt").write_text("seqA\n")
    with pytest.raises(FileNotFoundError, match="nowhere: ground truth not found.*--ground_truth"):
        open_benchmark("DAVIS", _cfg(), paths={"ground_truth": tmp_path / "nowhere"})


def test_paths_override_the_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("TARVIS_WORKSPACE_DIR", raising=False)
    annotation, images = tmp_path / "elsewhere/my_valid.json", tmp_path / "imgs"
    _vis_workspace(tmp_path, Path("elsewhere/my_valid.json"), Path("imgs"))
    # None values are flags left unset: ignored.
    benchmark = open_benchmark("youtube_vis", _cfg(), paths={"annotations": annotation, "images": images,
                                                             "ground_truth": None})
    assert benchmark.name == "YOUTUBE_VIS" and benchmark.paths == {"annotations": annotation, "images": images}
    assert benchmark.sequences()[0].frames[0] == images / "vidA/00000.jpg"


def test_bad_names_splits_and_keys(tmp_path):
    _vis_workspace(tmp_path, ANN / "youtube_vis/valid_2021.json")
    with pytest.raises(ValueError, match="unknown benchmark 'YTVIS'"):
        open_benchmark("YTVIS", _cfg(), workspace=tmp_path)
    with pytest.raises(ValueError, match="no split 'test'"):
        open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path, split="test")
    with pytest.raises(ValueError, match=r"no path \['image_set'\]"):
        open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path, paths={"image_set": tmp_path})


def test_malformed_inputs_are_named(tmp_path):
    (tmp_path / IMG / "youtube_vis_2021").mkdir(parents=True)
    source = _write_json(tmp_path / ANN / "youtube_vis/valid_2021.json", {"videos": [
        {"id": 1, "height": H, "width": W, "file_names": ["a/0.jpg"]}, {"id": 2, "width": W, "file_names": ["b/0.jpg"]}]})
    with pytest.raises(BenchmarkDataError, match=r"valid_2021.json: videos\[1\]: missing field 'height'"):
        open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path)
    source.write_text("{not json")
    with pytest.raises(BenchmarkDataError, match=r"valid_2021.json: not valid JSON.*--annotations"):
        open_benchmark("YOUTUBE_VIS", _cfg(), workspace=tmp_path)

    _davis_workspace(tmp_path)
    (tmp_path / ANN / "davis/ImageSet_val.txt").write_text("seqA\nghost\n")
    with pytest.raises(FileNotFoundError, match=r"davis/ghost: no frames.*--images"):
        open_benchmark("DAVIS", _cfg(), workspace=tmp_path)
    (tmp_path / ANN / "davis/ImageSet_val.txt").write_text("seqA\n")
    _label_png(tmp_path / ANN / "davis/Annotations/seqA/00000.png", np.zeros((H, W), np.uint8))
    with pytest.raises(BenchmarkDataError, match=r"Annotations/seqA: no object \(ids 1-254\) in 00000.png"):
        open_benchmark("DAVIS", _cfg(), workspace=tmp_path)

    content = json.loads(_burst_workspace(tmp_path).read_text())
    content["sequences"][0]["annotated_image_paths"][1] = "frame9999.jpg"
    _write_json(tmp_path / ANN / "burst/first_frame_annotations_val.json", content)
    with pytest.raises(BenchmarkDataError, match=r"v_one.*\['frame9999.jpg'\] are not in all_image_paths"):
        open_benchmark("BURST", _cfg(), workspace=tmp_path)
    content = json.loads(_burst_workspace(tmp_path).read_text())
    del content["sequences"][1]["segmentations"][0]["2"]["point"]
    _write_json(tmp_path / ANN / "burst/first_frame_annotations_val.json", content)
    with pytest.raises(BenchmarkDataError, match=r"v_two.*tracks \[2\] have no point"):
        open_benchmark("BURST", _cfg(), workspace=tmp_path)


def test_object_reference_checks():
    with pytest.raises(ValueError, match="needs a mask or a point"):
        ObjectReference(1, 0, None, None)
    with pytest.raises(ValueError, match="object ids are >= 1"):
        ObjectReference(0, 0, None, (1.0, 2.0))
    with pytest.raises(ValueError, match="bool"):
        ObjectReference(1, 0, np.zeros((2, 2), np.uint8), None)
