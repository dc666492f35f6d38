"""The inputs that used to give a wrong result with exit code 0 (issue 16), on the small checkpoint:

- a truncated JPEG among the frames is an error naming the frame;
- void (255) in a first-frame id map is ignored, as the DAVIS reader ignores it;
- an own-video output folder holding another run's results is refused unless --overwrite, which leaves nothing of
  the old run; an interrupted run, killed leftovers included, finishes with --resume into the same bytes as an
  uninterrupted run.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.videos import (
    HEIGHT,
    WIDTH,
    first_frame_ids,
    moving_square_frames,
    write_jpeg_folder,
)

from tarvis_fast.formats.davis import write_label_png
from tarvis_fast.formats.run_record import RUN_JSON, read_run_record
from tarvis_fast.inference import video as video_module
from tarvis_fast.inference.cli import main
from tarvis_fast.inference.predictor import VideoPredictor
from tarvis_fast.inference.video import read_image_rgb, read_masks_json

H, W = HEIGHT, WIDTH
FAST = ["--clip_length", "4", "--frame_overlap", "2", "--min_dim", "48"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return write_jpeg_folder(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def mask(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mask") / "first.png"
    write_label_png(path, first_frame_ids())
    return path


def vos(checkpoint: Path, frames: Path, mask: Path, out: Path, *extra: str) -> list[str]:
    return [str(checkpoint), "--video", str(frames), "--task", "vos", "--masks", str(mask), "--output_dir", str(out),
            *FAST, *extra]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, hidden ones included, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------- corrupt frames

def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), moving_square_frames(1)[0])
    whole = path.read_bytes()
    path.write_bytes(whole + b"trailing data some writers add")  # complete, with bytes after the end marker
    assert read_image_rgb(path).shape == (H, W, 3)
    path.write_bytes(whole[: len(whole) * 2 // 3])
    assert cv2.imread(str(path)) is not None  # what made it silent: cv2 decodes it, greying the rest
    with pytest.raises(ValueError, match="frame.jpg: truncated or corrupt JPEG"):
        read_image_rgb(path)


def test_a_truncated_frame_stops_the_run_naming_it(checkpoint, mask, tmp_path, capsys):
    folder = write_jpeg_folder(tmp_path / "frames")
    jpeg = folder / "00003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-200])
    out = tmp_path / "out"
    assert main(vos(checkpoint, folder, mask, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {jpeg}: truncated or corrupt JPEG")
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporary file left behind
    assert read_run_record(out)[1] is False  # marked unfinished: a plain rerun is refused, --resume redoes it


# ---------------------------------------------------------------------------------------------------- void 255

def test_void_in_a_first_frame_id_map_is_ignored(checkpoint):
    predictor = VideoPredictor.from_checkpoint(checkpoint, device="cpu")
    kwargs = {"clip_length": 4, "frame_overlap": 2, "min_dim": 48}
    with_void = list(predictor.segment(moving_square_frames(), "vos", masks={0: first_frame_ids(void=True)}, **kwargs))
    without = list(predictor.segment(moving_square_frames(), "vos", masks={0: first_frame_ids()}, **kwargs))
    for (_, a), (_, b) in zip(with_void, without, strict=True):
        assert a.object_ids == b.object_ids and set(a.object_ids) <= {1, 2}
        np.testing.assert_array_equal(a.masks, b.masks)
    with pytest.raises(ValueError, match="holds no object"):
        predictor.segment(moving_square_frames(), "vos", masks={0: np.full((H, W), 255, np.uint8)}, **kwargs)


def test_void_in_a_masks_png_is_ignored(checkpoint, frames, tmp_path):
    void_png = tmp_path / "void.png"
    write_label_png(void_png, first_frame_ids(void=True))
    assert main(vos(checkpoint, frames, void_png, tmp_path / "out")) == 0
    _, results = read_masks_json(tmp_path / "out" / "masks.json")
    assert {entry.object_id for _, _, entries in results for entry in entries} <= {1, 2}


# ---------------------------------------------------------------------------------------------------- output folders

@pytest.mark.slow
def test_another_runs_folder_is_refused_and_overwrite_leaves_nothing_of_it(checkpoint, frames, mask, tmp_path,
                                                                           capsys):
    out = tmp_path / "out"
    assert main(vos(checkpoint, frames, mask, out)) == 0
    before = files(out)
    shorter = write_jpeg_folder(tmp_path / "shorter", count=4)
    assert main(vos(checkpoint, shorter, mask, out)) == 2
    assert "--overwrite" in capsys.readouterr().err and files(out) == before  # refused, and nothing touched
    assert main(vos(checkpoint, shorter, mask, out, "--overwrite")) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    _, results = read_masks_json(out / "masks.json")
    assert len(results) == 4 and read_run_record(out)[0]["video"] == str(shorter.resolve())


@pytest.mark.slow
def test_resume_after_an_interruption_equals_an_uninterrupted_run(checkpoint, frames, mask, tmp_path, capsys,
                                                                  monkeypatch):
    whole = tmp_path / "whole"
    assert main(vos(checkpoint, frames, mask, whole)) == 0

    out = tmp_path / "interrupted"
    write_png = video_module._write_mask_png

    def interrupt_at_frame_3(path: Path, result) -> None:
        if result.frame_index == 3:
            raise KeyboardInterrupt
        write_png(path, result)

    monkeypatch.setattr(video_module, "_write_mask_png", interrupt_at_frame_3)
    assert main(vos(checkpoint, frames, mask, out)) == 130
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert not (out / "masks.json").exists() and not any(p.name.startswith(".") for p in out.rglob("*"))
    # What `kill -9` leaves: the temporary files of the atomic writes in flight.
    for leftover in (out / ".masks.x1y2.json", out / ".overlay.x1y2.mp4", out / "masks" / ".00003.x1y2.png"):
        leftover.write_bytes(b"half")

    assert main(vos(checkpoint, frames, mask, out)) == 2
    assert "give --resume to finish it or --overwrite" in capsys.readouterr().err
    assert main(vos(checkpoint, frames, mask, out, "--resume", "--min_dim", "64")) == 2  # other flags: refused
    assert "differing: min_dim" in capsys.readouterr().err
    assert main(vos(checkpoint, frames, mask, out, "--resume")) == 0
    assert files(out) == files(whole) and (out / RUN_JSON).exists()

    assert main(vos(checkpoint, frames, mask, out, "--resume")) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().err and files(out) == files(whole)
