"""The app's `/run` endpoint through `gradio_client`, against the test's server: every task, and bad inputs that
must come back as messages while the server keeps serving."""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tarvis_fast.app.inputs import SAMPLE_FRAMES, SAMPLE_SIZE, object_colours
from tarvis_fast.app.run import TABLE_HEADERS
from tarvis_fast.data.synthetic import generate_videos
from tarvis_fast.inference.video import open_frames, read_masks_json

from .conftest import MAX_UPLOAD_MB, Server

gradio_client = pytest.importorskip("gradio_client")
AppError = gradio_client.exceptions.AppError
handle_file = gradio_client.handle_file

SIZE = (72, 96)  # (H, W) of the uploaded test videos


@pytest.fixture(scope="module")
def client(server: Server, tmp_path_factory: pytest.TempPathFactory) -> gradio_client.Client:
    return gradio_client.Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return generate_videos(seed=3, count=1, num_frames=6, size=SIZE, visible_at_start=True)[0].frames


def write_mp4(path: Path, frames: np.ndarray) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run(client: gradio_client.Client, files=(), task="pet", vocabulary=None, frame=0, editor=None, points=""):
    video, table, archive, status = client.predict(list(files), task, vocabulary, frame, editor, points,
                                                   api_name="/run")
    assert table["headers"] == TABLE_HEADERS
    return Path(video), table["data"], Path(archive), status


def check_outputs(video: Path, archive: Path, num_frames: int, size: tuple[int, int], task: str) -> None:
    """The browser video has every frame; the zip holds what infer.py writes (mask PNGs, masks.json, overlay)."""
    frames = list(open_frames(video).frames)
    assert video.suffix == ".webm" and len(frames) == num_frames and frames[0].shape[:2] == size
    unpacked = archive.parent / "unpacked"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    assert len(list((unpacked / "masks").glob("*.png"))) == num_frames
    assert (unpacked / "overlay.webm").stat().st_size > 0
    header, entries = read_masks_json(unpacked / "masks.json")
    assert header["task"] == task and len(entries) == num_frames


def test_pet_on_the_sample(client):
    video, rows, archive, status = run(client, points="100,120; 200,150")
    check_outputs(video, archive, SAMPLE_FRAMES, SAMPLE_SIZE, "pet")
    assert [row[:3] for row in rows] == [[1, "object", ""], [2, "object", ""]]
    assert all(row[3] >= 1 and row[8] is None for row in rows)
    assert status.startswith("PET on **sample**: 24 frames")


def test_vos_on_an_uploaded_video_with_painted_layers(client, video, tmp_path):
    layer = np.zeros((*SIZE, 4), np.uint8)
    colours = object_colours()
    layer[10:30, 10:30, :3], layer[10:30, 10:30, 3] = colours[0], 255   # object 1
    layer[40:60, 50:80, :3], layer[40:60, 50:80, 3] = colours[1], 255   # object 2
    Image.fromarray(layer).save(tmp_path / "layer.png")
    Image.fromarray(video[2]).save(tmp_path / "background.png")
    editor = {"background": handle_file(tmp_path / "background.png"), "layers": [handle_file(tmp_path / "layer.png")],
              "composite": handle_file(tmp_path / "background.png")}
    clip = write_mp4(tmp_path / "clip.mp4", video)
    out, rows, archive, _ = run(client, [handle_file(clip)], "vos", frame=2, editor=editor)
    check_outputs(out, archive, len(video), SIZE, "vos")
    assert [row[0] for row in rows] == [1, 2]
    assert all(row[4] == 2 for row in rows)  # given on frame 2: no masks before it


def test_vis_on_uploaded_frames(client, video, tmp_path):
    paths = []
    for index, frame in enumerate(video):
        Image.fromarray(frame).save(tmp_path / f"frame_{index:02d}.png")
        paths.append(handle_file(tmp_path / f"frame_{index:02d}.png"))
    out, rows, archive, _ = run(client, paths[::-1], "vis", "youtube_vis")  # ordered by name, not upload
    check_outputs(out, archive, len(video), SIZE, "vis")
    assert rows and all(row[1] == "instance" and row[2] and 0 <= row[8] <= 1 for row in rows)


def test_vps_on_the_sample(client):
    out, rows, archive, _ = run(client, task="vps", vocabulary="kitti_step")
    check_outputs(out, archive, SAMPLE_FRAMES, SAMPLE_SIZE, "vps")
    assert {row[1] for row in rows} <= {"thing", "stuff"} and any(row[1] == "stuff" for row in rows)


@pytest.mark.parametrize("case, message", [
    ("text", "notes.mp4: cannot open as a video"),
    ("too_big", f"this app takes up to {MAX_UPLOAD_MB:g} MB"),
    ("point_outside", "point 2: (500, 10) lies outside the frame"),
    ("vos_nothing_drawn", "VOS needs at least one object"),
    ("pet_no_point", "PET needs at least one point"),
    ("mixed_upload", "not both"),
    ("vocabulary_for_the_task", "choose a vocabulary for VIS: youtube_vis, ovis"),
    ("vocabulary_not_in_the_model", "the model has no semantic queries for OVIS"),
])
def test_bad_input_gets_a_message(client, video, tmp_path, case, message):
    (tmp_path / "notes.mp4").write_text("not a video")
    for name in ("big_1.png", "big_2.png"):  # each under the limit (Gradio refuses a bigger file itself), not both
        (tmp_path / name).write_bytes(b"\0" * int(0.6 * 2**20))
    Image.fromarray(video[0]).save(tmp_path / "frame.png")
    calls = {
        "text": dict(files=[handle_file(tmp_path / "notes.mp4")], points="1,1"),
        "too_big": dict(files=[handle_file(tmp_path / "big_1.png"), handle_file(tmp_path / "big_2.png")]),
        "point_outside": dict(points="10,10; 500,10"),
        "vos_nothing_drawn": dict(task="vos"),
        "pet_no_point": dict(points=" ; "),
        "mixed_upload": dict(files=[handle_file(tmp_path / "frame.png"), handle_file(tmp_path / "notes.mp4")]),
        "vocabulary_for_the_task": dict(task="vis", vocabulary="kitti_step"),
        "vocabulary_not_in_the_model": dict(task="vis", vocabulary="ovis"),
    }
    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(client, **calls[case])
    assert not str(tmp_path) in message


def test_gradio_refuses_a_file_over_the_limit_itself(client, tmp_path):
    (tmp_path / "big.mp4").write_bytes(b"\0" * int(1.5 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        run(client, files=[handle_file(tmp_path / "big.mp4")], points="1,1")
    with pytest.raises(AppError, match="PET needs at least one point"):  # and the server answers on
        run(client)
