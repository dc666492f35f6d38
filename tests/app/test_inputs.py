"""The app's pure helpers: painted layers to object masks, clicked points, uploads, the result table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.app.inputs import (
    VideoSource,
    add_point,
    masks_from_editor,
    object_colours,
    parse_points,
    prepare_video,
    read_frame,
)
from tarvis_fast.app.run import ResultTable
from tarvis_fast.inference.video import FrameResult

SOURCE = VideoSource(Path("clip.mp4"), "clip.mp4", num_frames=5, size=(40, 60), fps=None, frame_names=None)


def layer(size: tuple[int, int], box: tuple[int, int, int, int], colour, alpha: int = 255) -> np.ndarray:
    rgba = np.zeros((*size, 4), np.uint8)
    y0, x0, y1, x1 = box
    rgba[y0:y1, x0:x1, :3], rgba[y0:y1, x0:x1, 3] = colour, alpha
    return rgba


def test_each_brush_colour_is_an_object_and_later_layers_paint_over():
    colours = object_colours()
    near_third = np.clip(colours[2].astype(int) + 20, 0, 255)  # anti-aliasing and compression shift colours
    layers = [layer((40, 60), (0, 0, 20, 30), colours[0]) | layer((40, 60), (20, 0, 40, 30), near_third),
              layer((40, 60), (10, 10, 30, 50), colours[1]), layer((40, 60), (0, 50, 40, 60), colours[4], alpha=40)]
    ids = masks_from_editor({"background": None, "layers": layers, "composite": None}, (40, 60))
    assert ids[0, 0] == 1 and ids[39, 0] == 3 and ids[15, 20] == 2 and ids[0, 55] == 0  # faint strokes: unpainted
    assert not masks_from_editor(None, (40, 60)).any()
    assert masks_from_editor({"layers": [layer((20, 30), (0, 0, 10, 15), colours[0])]}, (40, 60))[19, 29] == 1


def test_points_are_objects_in_order_on_their_frames():
    text = add_point(add_point("", 3, 4, 0), 10.5, 20, 2)
    assert text == "3,4; 10.5,20@2"
    assert parse_points(text, SOURCE) == {1: (0, (3.0, 4.0)), 2: (2, (10.5, 20.0))}
    assert parse_points(" ; ", SOURCE) == {}


@pytest.mark.parametrize("text, message", [
    ("1,1; 60,3", r"point 2: \(60, 3\) lies outside the frame, whose pixels are x 0..59, y 0..39"),
    ("-1,3", r"point 1: \(-1, 3\) lies outside"),
    ("1,1@5", "point 1: frame 5 is not in the video"),
    ("here", "point 1: 'here' is not 'x,y' or 'x,y@frame'"),
])
def test_bad_points_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_points(text, SOURCE)


def test_uploaded_frames_are_gathered_in_name_order(tmp_path):
    frames = [np.full((8, 12, 3), value, np.uint8) for value in (10, 20, 30)]
    for name, frame in zip(("b.png", "c.png", "a.png"), frames):
        Image.fromarray(frame).save(tmp_path / name)
    source = prepare_video([tmp_path / n for n in ("b.png", "c.png", "a.png")], tmp_path, tmp_path / "up", 1.0)
    assert (source.name, source.num_frames, source.size, source.frame_names) == ("3 frames", 3, (8, 12),
                                                                                ["a", "b", "c"])
    assert read_frame(source, 0)[0, 0, 0] == 30
    with pytest.raises(ValueError, match="frame 3 is not in the video"):
        read_frame(source, 3)
    (tmp_path / "d.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="^4 frames: d.png: cannot read the image$"):
        prepare_video([tmp_path / n for n in ("a.png", "b.png", "c.png", "d.png")], tmp_path, tmp_path / "up", 1.0)


def test_the_table_counts_frames_areas_and_scores():
    table = ResultTable(("road", "car"))
    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2] = True
    for index in (3, 4):
        table.add(index, FrameResult(index, [7, 9], masks, [1, 1], ["car", "car"], [0.5, 0.7]))
    panoptic = FrameResult(0, [2], masks[:1], [1], ["car"], [None], semantic=np.zeros((4, 5), np.int32))
    table.add(5, panoptic)
    assert table.rows() == [[2, "thing", "car", 1, 5, 5, 10.0, 50.0, None],
                            [7, "instance", "car", 2, 3, 4, 10.0, 50.0, 0.5],
                            [None, "stuff", "road", 1, 5, 5, 10.0, 50.0, None]]
