"""`tarvis-infer` end to end with a small random ResNet-50 TarViS saved as a checkpoint with its config.yaml:

- your own video: an .avi written from the real DAVIS clip, through vos (an OSVOS mask PNG), pet (points, one on a
  later frame) and vps; the written PNGs, RLE JSON and overlay video are read back and checked against each other;
- a benchmark: a DAVIS-2017 layout built from the same clip, with --eval, then --resume (nothing left to do), then
  the same run in two --seq_split shards, which must assemble the very same files;
- bad flags and files, named in the error.

A random network's masks are arbitrary, so the checks are structural, plus what holds for any network: an object
has no mask before its reference frame, and a sharded run equals an unsharded one.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tarvis_fast.formats.davis import read_label_png, read_results, write_label_png
from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.inference.cli import main
from tarvis_fast.inference.video import OverlayVideoWriter, open_frames, read_image_rgb, read_masks_json
from tarvis_fast.datasets import vocabulary

SIZE = (120, 214)                 # (H, W) of the test videos: horsejump-high at a quarter of its area
FAST = ["--clip_length", "4", "--frame_overlap", "2", "--min_dim", "64"]   # network input 64x114


def small(image: np.ndarray, nearest: bool = False) -> np.ndarray:
    return cv2.resize(image, SIZE[::-1], interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


@pytest.fixture(scope="module")
def user_video(davis_clip: Path, tmp_path_factory) -> tuple[Path, Path]:
    """horsejump-high frames 0, 8, ..., 40 as a 6-frame .avi, and OSVOS's frame-0 mask (ids 1, 2) as a PNG."""
    folder = tmp_path_factory.mktemp("video")
    with OverlayVideoWriter(folder / "clip.avi", fps=6) as writer:
        for t in range(0, 48, 8):
            writer.write(small(read_image_rgb(davis_clip / "JPEGImages" / "horsejump-high" / f"{t:05d}.jpg")))
    write_label_png(folder / "first.png", small(read_label_png(davis_clip / "osvos" / "horsejump-high" / "00000.png"),
                                                nearest=True))
    return folder / "clip.avi", folder / "first.png"


def read_outputs(output: Path, num_frames: int) -> tuple[dict, list[np.ndarray]]:
    """masks.json and the masks/ PNGs, after checking that they and overlay.mp4 cover the video frame by frame."""
    content = json.loads((output / "masks.json").read_text())
    names = [f"{t:05d}" for t in range(num_frames)]
    assert [f["name"] for f in content["frames"]] == names
    assert [f["frame_index"] for f in content["frames"]] == list(range(num_frames))
    assert sorted(p.stem for p in (output / "masks").iterdir()) == names
    overlay = open_frames(output / "overlay.mp4")
    frames = list(overlay.frames)
    assert len(frames) == num_frames and frames[0].shape == (*SIZE, 3)
    pngs = [np.asarray(Image.open(output / "masks" / f"{name}.png")) for name in names]
    return content, pngs


def painted(objects: list[dict]) -> np.ndarray:
    """The RLE masks of a frame painted in order (later on top), as the PNG is."""
    ids = np.zeros(SIZE, np.int64)
    for entry in objects:
        ids[decode_rle(entry["rle"])] = entry["id"]
    return ids


def test_vos_on_a_video_file(checkpoint, user_video, tmp_path):
    video, first = user_video
    out = tmp_path / "vos"
    assert main([str(checkpoint), "--video", str(video), "--task", "vos", "--masks", str(first), "--output_dir",
                 str(out), *FAST]) == 0
    content, pngs = read_outputs(out, 6)
    assert content["task"] == "vos" and content["source"] == str(video)
    header, frames = read_masks_json(out / "masks.json")  # the reader beside the writer agrees with the PNGs
    assert header == {"source": str(video), "task": "vos", "vocabulary": None}
    for (index, name, entries), png in zip(frames, pngs):
        ids = np.zeros(SIZE, np.int64)
        for entry in entries:
            ids[entry.mask] = entry.object_id
        assert name == f"{index:05d}" and np.array_equal(ids, png)
    for frame, png in zip(content["frames"], pngs):
        labels = read_label_png(out / "masks" / f"{frame['name']}.png", shape=SIZE)  # a DAVIS palette PNG
        np.testing.assert_array_equal(labels, png)
        assert set(np.unique(labels)) <= {0, 1, 2}
        assert {o["id"] for o in frame["objects"]} <= {1, 2}
        assert all(o["class_id"] is None and o["score"] is None for o in frame["objects"])
        np.testing.assert_array_equal(painted(frame["objects"]), labels)


def test_pet_with_points_from_a_json_file(checkpoint, user_video, tmp_path):
    video, first = user_video
    labels = read_label_png(first)
    points = []
    for object_id, frame in ((1, 0), (2, 2)):  # object 2 is given on frame 2 only
        ys, xs = np.nonzero(labels == object_id)
        points.append({"id": object_id, "frame": frame, "x": int(np.median(xs)), "y": int(np.median(ys))})
    (tmp_path / "points.json").write_text(json.dumps(points))
    out = tmp_path / "pet"
    assert main([str(checkpoint), "--video", str(video), "--task", "pet", "--points", str(tmp_path / "points.json"),
                 "--output_dir", str(out), *FAST]) == 0
    content, pngs = read_outputs(out, 6)
    for frame, png in zip(content["frames"], pngs):
        ids = {o["id"] for o in frame["objects"]}
        assert ids <= ({1} if frame["frame_index"] < 2 else {1, 2})  # no mask before its reference frame
        np.testing.assert_array_equal(painted(frame["objects"]), png)


def test_vps_writes_classes_and_tracks(checkpoint, user_video, tmp_path):
    video, _ = user_video
    out = tmp_path / "vps"
    assert main([str(checkpoint), "--video", str(video), "--task", "vps", "--vocabulary", "kitti_step",
                 "--output_dir", str(out), *FAST]) == 0
    content, pngs = read_outputs(out, 6)
    vocab = vocabulary("kitti_step")
    for frame, png in zip(content["frames"], pngs):
        semantic, track = png[..., 0].astype(int), png[..., 1].astype(int) * 256 + png[..., 2]
        np.testing.assert_array_equal(painted(frame["objects"]), track)
        for entry in frame["objects"]:
            assert entry["class_id"] in vocab.thing_classes and entry["class_name"] == vocab.names[entry["class_id"]]
            assert (semantic[decode_rle(entry["rle"]) & (track == entry["id"])] == entry["class_id"]).all()
        for entry in frame["stuff"]:
            mask = decode_rle(entry["rle"])
            assert (semantic[mask] == entry["class_id"]).all() and not track[mask].any()


# ---------------------------------------------------------------------------------------------------- a benchmark

@pytest.fixture(scope="module")
def davis_root(davis_clip: Path, tmp_path_factory) -> Path:
    """A DAVIS-2017 root with two 6-frame sequences cut from horsejump-high; OSVOS's masks as ground truth."""
    root = tmp_path_factory.mktemp("davis")
    sequences = {"hj-a": range(0, 24, 4), "hj-b": range(24, 48, 4)}
    for name, frames in sequences.items():
        for folder in ("JPEGImages", "Annotations"):
            (root / folder / "480p" / name).mkdir(parents=True)
        for i, t in enumerate(frames):
            image = small(read_image_rgb(davis_clip / "JPEGImages" / "horsejump-high" / f"{t:05d}.jpg"))
            cv2.imwrite(str(root / "JPEGImages" / "480p" / name / f"{i:05d}.jpg"), image[..., ::-1])
            mask = read_label_png(davis_clip / "osvos" / "horsejump-high" / f"{t:05d}.png")
            write_label_png(root / "Annotations" / "480p" / name / f"{i:05d}.png", small(mask, nearest=True))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return root


def davis_args(checkpoint: Path, root: Path, output: Path, *extra: str) -> list[str]:
    return [str(checkpoint), "--dataset", "DAVIS", "--output_dir", str(output),
            "--images", str(root / "JPEGImages" / "480p"), "--annotations", str(root / "Annotations" / "480p"),
            "--image_set", str(root / "ImageSets" / "2017" / "val.txt"), "--ground_truth", str(root), *FAST, *extra]


def result_pngs(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.glob("hj-*/*.png"))}


def test_davis_benchmark_eval_resume_and_shards(checkpoint, davis_root, tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(davis_args(checkpoint, davis_root, whole, "--eval")) == 0
    for name in ("hj-a", "hj-b"):
        first = read_label_png(davis_root / "Annotations" / "480p" / name / "00000.png")
        labels = read_results(whole, name, [f"{i:05d}" for i in range(6)], shape=SIZE, max_id=255)
        assert set(np.unique(labels)) <= set(np.unique(first))  # only the reference's objects
    stats = json.loads((whole / "eval.json").read_text())
    assert 0 <= stats["J&F-Mean"] <= 1 and set(stats["per_sequence"]) >= {"hj-a_1", "hj-b_1"}
    assert "J&F-Mean" in capsys.readouterr().out

    before = {p: p.stat().st_mtime_ns for p in whole.rglob("*") if p.is_file()}
    assert main(davis_args(checkpoint, davis_root, whole, "--resume")) == 0
    assert "2 sequences selected, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in whole.rglob("*") if p.is_file()} == before

    shards = tmp_path / "shards"
    assert main(davis_args(checkpoint, davis_root, shards, "--seq_split", "1/2", "--eval")) == 0
    assert sorted(p.name for p in shards.glob("hj-*")) == ["hj-a"]
    assert "not complete" in capsys.readouterr().err and not (shards / "eval.json").exists()
    assert main(davis_args(checkpoint, davis_root, shards, "--seq_split", "2/2", "--eval")) == 0
    assert result_pngs(shards) == result_pngs(whole) and len(result_pngs(whole)) == 12
    assert json.loads((shards / "eval.json").read_text()) == stats

    # Another run into the same folder would mix results: refused, unless --overwrite replaces them.
    (whole / "notes.txt").write_text("the user's own file")
    assert main(davis_args(checkpoint, davis_root, whole, "--final_clip", "consistent", "--resume")) == 2
    assert "holds the results of another run (differing: final_clip)" in capsys.readouterr().err
    assert main(davis_args(checkpoint, davis_root, whole, "--final_clip", "consistent", "--overwrite")) == 0
    assert json.loads((whole / "run.json").read_text())["run"]["final_clip"] == "consistent"
    assert (whole / "notes.txt").read_text() == "the user's own file" and len(result_pngs(whole)) == 12


# ---------------------------------------------------------------------------------------------------- errors

def test_bad_flags_and_files_are_named(checkpoint, user_video, tmp_path, capsys):
    video, first = user_video

    def fails(*argv: str) -> str:  # our checks and argparse's both exit with 2 (tests/test_cli_errors.py has more)
        assert main([str(checkpoint), *argv, "--output_dir", str(tmp_path / "out")]) == 2
        return capsys.readouterr().err

    usage_error = fails

    err = fails("--video", str(video), "--task", "vos", "--masks", str(tmp_path / "none.png"))
    assert "--masks: " in err and "none.png: label PNG not found" in err
    err = fails("--video", str(video), "--task", "vos", "--masks", f"0:{first},x.png")
    assert "--masks: 'x.png' is not 'frame:path'" in err
    assert "--points: 'a,b' is not an 'x,y' pair" in fails("--video", str(video), "--task", "pet", "--points", "a,b")
    assert "--eval is for --dataset runs" in usage_error("--video", str(video), "--task", "vos", "--eval")
    assert "--video needs --task" in usage_error("--video", str(video))
    assert "--task vis needs --vocabulary youtube_vis | ovis" in usage_error("--video", str(video), "--task", "vis")
    assert "--task vos needs --masks" in usage_error("--video", str(video), "--task", "vos")
    assert "--min_dim and --disable_resize exclude each other" in usage_error(
        "--video", str(video), "--task", "vos", "--min_dim", "64", "--disable_resize")
    assert main([str(checkpoint), "--video", str(video), "--output_dir", str(tmp_path), "--cfg.model.hidden_dim"]) == 2
    assert "config override --cfg.model.hidden_dim has no value" in capsys.readouterr().err
    err = fails("--dataset", "DAVIS", "--images", str(tmp_path / "nowhere"))
    assert "nowhere" in err and "--images" in err

    bare = tmp_path / "bare" / "model.pth"
    bare.parent.mkdir()
    bare.write_bytes(checkpoint.read_bytes())
    assert main([str(bare), "--video", str(video), "--task", "vos", "--masks", str(first), "--output_dir",
                 str(tmp_path / "out")]) == 2
    assert "config.yaml: config file not found" in capsys.readouterr().err
