"""Frame streams from folders, video files and arrays; overlay rendering and writing."""
import os

import numpy as np
import pytest

from tarvis_fast.inference.video import (
    FrameResult,
    OverlayVideoWriter,
    clear_video_outputs,
    draw_overlay,
    id_colours,
    open_frames,
    video_output_files,
    write_video_outputs,
)


def test_folder_of_real_frames(davis_clip):
    stream = open_frames(davis_clip / "JPEGImages" / "horsejump-high")
    assert stream.num_frames == 50 and stream.names[:2] == ["00000", "00001"]
    first = next(stream.frames)
    assert first.shape == (480, 854, 3) and first.dtype == np.uint8


def test_arrays_and_bad_frames():
    frames = [np.full((4, 6, 3), i, np.uint8) for i in range(3)]
    stream = open_frames(frames)
    assert stream.num_frames == 3 and [int(f[0, 0, 0]) for f in stream.frames] == [0, 1, 2]
    with pytest.raises(ValueError, match="frame 1 is 5x4, but earlier frames are 6x4"):
        list(open_frames([frames[0], np.zeros((4, 5, 3), np.uint8)]).frames)
    with pytest.raises(ValueError, match="frame 0 must be uint8"):
        list(open_frames([np.zeros((4, 5, 3), np.float32)]).frames)
    with pytest.raises(ValueError, match=r"frame 0 must be an \(H, W, 3\) RGB array"):
        list(open_frames(iter([np.zeros((4, 5), np.uint8)])).frames)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_frames(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="holds no images"):
        open_frames(tmp_path)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot open as a video"):
        open_frames(tmp_path / "junk.mp4")


def test_video_round_trip_and_overlay(tmp_path):
    """An overlay video written and read back: frame count, size and the colour of a labelled square."""
    ids = np.zeros((64, 96), np.int64)
    ids[16:48, 40:72] = 2
    frame = np.full((64, 96, 3), 100, np.uint8)
    overlay = draw_overlay(frame, ids, {2: "horse"})
    # inside the square, away from its outline: 0.5 * colour(2) + 0.5 * 100
    np.testing.assert_array_equal(overlay[32, 56], (0.5 * id_colours(2) + 50).astype(np.uint8))
    np.testing.assert_array_equal(overlay[60, 90], frame[60, 90])  # background untouched
    path = tmp_path / "out" / "overlay.avi"
    with OverlayVideoWriter(path, fps=5) as writer:
        for _ in range(4):
            writer.write(overlay)
    stream = open_frames(path)
    frames = list(stream.frames)
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3) and stream.fps == pytest.approx(5)
    assert np.abs(frames[0][32, 56].astype(int) - overlay[32, 56].astype(int)).max() < 20  # MJPG is lossy
    assert [p.name for p in path.parent.iterdir()] == ["overlay.avi"]  # no temporary left behind


def test_small_frames_get_no_legend():
    """Below LEGEND_MIN_SIDE the legend would cover the frame: only the masks are drawn."""
    ids = np.zeros((64, 96), np.int64)
    ids[16:48, 40:72] = 2
    frame = np.full((64, 96, 3), 100, np.uint8)
    assert np.array_equal(draw_overlay(frame, ids, {2: "horse"}), draw_overlay(frame, ids, {}))
    big_ids, big_frame = np.kron(ids, np.ones((3, 3), np.int64)), np.full((192, 288, 3), 100, np.uint8)
    assert not np.array_equal(draw_overlay(big_frame, big_ids, {2: "horse"}), draw_overlay(big_frame, big_ids, {}))


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "overlay.avi"
    with pytest.raises(RuntimeError, match="boom"):
        with OverlayVideoWriter(path) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_id_colours_are_the_voc_map_and_cycle_past_255():
    # The first entries of the PASCAL VOC colour map, as published with the VOC devkit; id 255 is (224, 224, 192)
    # there, and ids past 255 reuse the object colours 1..255.
    expected = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
    np.testing.assert_array_equal(id_colours(np.arange(6)), expected)
    np.testing.assert_array_equal(id_colours(np.array([255, 256, 257, 510])),
                                  [[224, 224, 192], [128, 0, 0], [0, 128, 0], [224, 224, 192]])


def test_overlay_codec_by_suffix(tmp_path, capfd):
    """A .webm overlay (VP8, what browsers play) reads back, without OpenCV's tag message on the process's stderr,
    which works again afterwards; an unknown suffix is refused before any work."""
    frame = np.full((48, 64, 3), 120, np.uint8)
    with OverlayVideoWriter(tmp_path / "overlay.webm", fps=5) as writer:
        for _ in range(3):
            writer.write(frame)
    os.write(2, b"after the writer\n")
    assert capfd.readouterr().err == "after the writer\n"
    frames = list(open_frames(tmp_path / "overlay.webm").frames)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert np.abs(frames[0].astype(int) - 120).mean() < 10
    with pytest.raises(ValueError, match=r"overlay.mkv: an overlay video is .mp4, .avi, .webm"):
        OverlayVideoWriter(tmp_path / "overlay.mkv")


def test_outputs_with_a_webm_overlay_are_found_and_cleared(tmp_path):
    """`write_video_outputs(overlay_suffix=".webm")` (the web app's) writes overlay.webm, which the clean-up of a
    refused or overwritten run knows as one of its files."""
    mask = np.zeros((1, 16, 24), bool)
    mask[0, 4:12, 6:18] = True
    results = [(t, FrameResult(t, [1], mask, [None], [None], [None], image=np.full((16, 24, 3), 90, np.uint8)))
               for t in range(3)]
    write_video_outputs(tmp_path, results, None, 5.0, source="clip", task="vos", vocabulary=None, class_names=(),
                        overlay_suffix=".webm")
    assert len(list(open_frames(tmp_path / "overlay.webm").frames)) == 3
    assert tmp_path / "overlay.webm" in video_output_files(tmp_path)
    clear_video_outputs(tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
