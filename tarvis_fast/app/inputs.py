"""What the user gives the app, checked and turned into `VideoPredictor.segment` arguments; no Gradio here.

- the video: an uploaded video file, a set of uploaded frames, or the bundled sample (`write_sample_video`), as a
  `VideoSource` (`prepare_video`);
- VOS objects: brush strokes on the image editor's layers, one palette colour per object (`masks_from_editor`);
- PET objects: clicked points, kept as editable text "x,y; x,y@frame" (`parse_points`, `format_point`), one
  object per point as in `infer.py --points`.

Every bad input raises a ValueError whose message is meant for the page, naming what the user gave (the file's
own name, the point's number), never a server path.
"""
from __future__ import annotations

import itertools
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tarvis_fast.data.synthetic import generate_videos
from tarvis_fast.inference.video import IMAGE_SUFFIXES, id_colours, open_frames

MAX_OBJECTS = 8                     # brush colours offered in the editor: objects 1..8
SAMPLE_NAME = "sample"
SAMPLE_FRAMES, SAMPLE_SIZE = 24, (240, 320)  # (H, W): small enough to run in seconds on a GPU, minutes on a CPU
ALPHA_PAINTED = 128                 # editor pixels at least this opaque are painted (brush edges are anti-aliased)


@dataclass(frozen=True)
class VideoSource:
    """A video ready for the predictor: `path` is a video file or a folder of frames (what `open_frames` takes)."""

    path: Path
    name: str                       # what the user knows it by (the file's name, "3 frames", "sample")
    num_frames: int
    size: tuple[int, int]           # (H, W)
    fps: float | None
    frame_names: list[str] | None   # a folder's file stems, for the mask PNGs' names; None for a video file


def object_colours() -> np.ndarray:
    """(MAX_OBJECTS, 3) uint8 RGB: the brush colour of objects 1.., the colours the result overlay gives them."""
    return id_colours(np.arange(1, MAX_OBJECTS + 1))


def write_sample_video(folder: Path) -> Path:
    """The bundled sample: a procedural video (`data.synthetic`) written as PNG frames into `folder/sample`."""
    target = folder / SAMPLE_NAME
    target.mkdir(parents=True, exist_ok=True)
    video = generate_videos(seed=0, count=1, num_frames=SAMPLE_FRAMES, size=SAMPLE_SIZE, num_objects=(3, 4),
                            visible_at_start=True)[0]
    for name, frame in zip(video.frame_names(), video.frames):
        Image.fromarray(frame).save(target / f"{name}.png")
    return target


def prepare_video(files: Sequence[str | Path] | None, sample: Path, upload_dir: Path,
                  max_upload_mb: float) -> VideoSource:
    """The uploaded video file, or the uploaded frames gathered into a folder under `upload_dir`, or `sample` when
    nothing is uploaded; checked: the size limit, one kind of upload, frames that decode."""
    paths = [Path(f) for f in files or ()]
    if not paths:
        return _describe(sample, SAMPLE_NAME)
    total_mb = sum(p.stat().st_size for p in paths) / 2**20
    if total_mb > max_upload_mb:
        raise ValueError(f"the upload is {total_mb:.1f} MB; this app takes up to {max_upload_mb:g} MB")
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if images and len(images) < len(paths):
        raise ValueError("upload one video file or a set of frames (images), not both")
    if not images:
        if len(paths) > 1:
            raise ValueError(f"upload one video file at a time (got {len(paths)} files)")
        return _describe(paths[0], paths[0].name)
    names = [p.name for p in images]
    if len(set(names)) < len(names):
        raise ValueError("two uploaded frames have the same file name; frames are ordered by name")
    folder = upload_dir / f"frames-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    for path in images:
        shutil.copyfile(path, folder / path.name)
    return _describe(folder, f"{len(images)} frame{'s' * (len(images) > 1)}")


def _describe(path: Path, name: str) -> VideoSource:
    """Decode the video once: its frame count (containers only estimate theirs), size, and whether it decodes."""
    try:
        stream = open_frames(path)
        first = next(stream.frames, None)
        count = 1 + sum(1 for _ in stream.frames) if first is not None else 0
    except ValueError as err:
        raise ValueError(f"{name}: {_without_path(str(err), path)}") from None
    if first is None:
        raise ValueError(f"{name}: not a video the app can read (no frame decodes); give a video file or images")
    return VideoSource(path, name, count, first.shape[:2], stream.fps, stream.names)


def _without_path(message: str, path: Path) -> str:
    """`open_frames` names the file by its server path; the page names it by the user's file name."""
    return message.replace(f"{path}/", "").replace(f"{path}: ", "").replace(str(path), "the upload")


def read_frame(source: VideoSource, index: int) -> np.ndarray:
    """Frame `index` (H, W, 3) uint8 RGB, decoded from the start (the app keeps no video in memory)."""
    if not 0 <= index < source.num_frames:
        raise ValueError(f"frame {index} is not in the video (frames 0..{source.num_frames - 1})")
    return next(itertools.islice(open_frames(source.path).frames, index, None))


# ============================================================================================== VOS: painted masks

def masks_from_editor(editor: Mapping | None, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 id map from the image editor's layers (RGBA arrays): a painted pixel belongs to the object whose
    brush colour is nearest its colour; later layers paint over earlier ones. All zeros when nothing is painted."""
    ids = np.zeros(size, np.uint8)
    palette = object_colours().astype(np.int32)
    for layer in (editor or {}).get("layers") or ():
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            continue  # an editor without layers sends its composite only; a layer is always RGBA
        if layer.shape[:2] != size:  # the canvas takes the frame's size; guard against a rescaled one
            layer = cv2.resize(layer, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        painted = layer[..., 3] >= ALPHA_PAINTED
        distance = ((layer[painted][:, None, :3].astype(np.int32) - palette[None]) ** 2).sum(-1)
        ids[painted] = distance.argmin(1) + 1
    return ids


# ============================================================================================== PET: clicked points

_POINT = re.compile(r"\s*(-?\d+(?:\.\d*)?)\s*,\s*(-?\d+(?:\.\d*)?)\s*(?:@\s*(\d+))?\s*")


def format_point(x: float, y: float, frame: int) -> str:
    """One point as the points box shows it: "x,y" on frame 0, "x,y@frame" on another frame."""
    return f"{x:g},{y:g}" + (f"@{frame}" if frame else "")


def add_point(text: str, x: float, y: float, frame: int) -> str:
    """The points box with one more point (the next object)."""
    return "; ".join(filter(None, [text.strip().strip(";").strip(), format_point(x, y, frame)]))


def parse_points(text: str, source: VideoSource) -> dict[int, tuple[int, tuple[float, float]]]:
    """"x,y; x,y@frame" -> {object id: (frame, (x, y))}, objects 1, 2, ... in order; each point on a frame of the
    video and inside it."""
    points = {}
    height, width = source.size
    for object_id, item in enumerate(filter(str.strip, text.split(";")), 1):
        match = _POINT.fullmatch(item)
        if match is None:
            raise ValueError(f"point {object_id}: {item.strip()!r} is not 'x,y' or 'x,y@frame'")
        x, y, frame = float(match[1]), float(match[2]), int(match[3] or 0)
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"point {object_id}: ({x:g}, {y:g}) lies outside the frame, whose pixels are x "
                             f"0..{width - 1}, y 0..{height - 1}")
        if frame >= source.num_frames:
            raise ValueError(f"point {object_id}: frame {frame} is not in the video (frames "
                             f"0..{source.num_frames - 1})")
        points[object_id] = (frame, (x, y))
    return points


def draw_points(frame: np.ndarray, points: Mapping[int, tuple[int, tuple[float, float]]],
                frame_index: int) -> np.ndarray:
    """The frame with the points given on it drawn as numbered dots in their object's colour."""
    out = frame.copy()
    for object_id, (at, (x, y)) in points.items():
        if at != frame_index:
            continue
        colour = tuple(int(c) for c in id_colours(object_id))
        centre = (round(x), round(y))
        cv2.circle(out, centre, 6, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, centre, 4, colour, -1, cv2.LINE_AA)
        cv2.putText(out, str(object_id), (centre[0] + 7, centre[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(out, str(object_id), (centre[0] + 7, centre[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                    cv2.LINE_AA)
    return out
