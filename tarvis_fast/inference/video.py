"""The user's own videos: frames in from a video file, a folder of images, arrays or an iterator; per-frame
results (`FrameResult`) out as mask PNGs, an RLE JSON and an overlay video.

Frames are streamed: nothing here holds the whole video in memory. What `write_video_outputs` writes into a folder:
- `masks/<frame>.png`: vos/pet/vis a palette PNG of object ids (vis: the rank of the (track, class) pair), vps an
  RGB PNG with R = class index, G * 256 + B = track id (the KITTI-STEP encoding);
- `masks.json` (`read_masks_json`): per frame, each object's id, class and score and its mask as COCO RLE (vps: also
  each stuff class);
- `overlay.mp4`: the frames with the masks blended in and a legend of ids and class names;
- `run.json` (`write_run_record`): what the run was (source, task, prompts, settings) and whether it finished, so
  that a later run into the same folder can tell its own results from another run's and never mixes the two.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tarvis_fast.datasets import vocabularies
from tarvis_fast.datasets import vocabulary as get_vocabulary
from tarvis_fast.formats.atomic import PendingFile, atomic_open
from tarvis_fast.formats.davis import DAVIS_PALETTE, write_label_png
from tarvis_fast.formats.image import IMAGE_SUFFIXES, read_image
from tarvis_fast.formats.jsonfile import json_field, json_list, read_json
from tarvis_fast.formats.rle import decode_rle, encode_rle
from tarvis_fast.formats.run_record import RUN_JSON
from tarvis_fast.inference.background import WRITE_AHEAD, consume_in_background
from tarvis_fast.tasks import Task

MASKS_DIR, MASKS_JSON, OVERLAY_VIDEO = "masks", "masks.json", "overlay.mp4"

FrameInput = str | os.PathLike | Sequence[np.ndarray] | Iterable[np.ndarray]

TASKS = tuple(task.short_name for task in Task)  # what `VideoPredictor.segment(task=...)` and `--task` take
SETTINGS_DATASET = {Task.VOS: "DAVIS", Task.PET: "BURST"}  # whose inference settings vos/pet take
VOCABULARIES = {task: tuple(vocabularies(task)) for task in (Task.VIS, Task.VPS)}  # vis/vps: their class sets


def settings_dataset(task: Task, vocabulary: str | None) -> str:
    """The config dataset whose inference settings (and, for vis/vps, semantic queries) a task on your own video
    takes: vos DAVIS's, pet BURST's, vis/vps those of the vocabulary's dataset."""
    if task in SETTINGS_DATASET:
        if vocabulary is not None:
            raise ValueError(f"task {task.short_name!r} is class-agnostic and takes no vocabulary")
        return SETTINGS_DATASET[task]
    choices = VOCABULARIES[task]
    if vocabulary is None or vocabulary.lower() not in choices:
        raise ValueError(f"task {task.short_name!r} needs vocabulary= one of {', '.join(choices)}, got "
                         f"{vocabulary!r}")
    return vocabulary.upper()


@dataclass
class FrameStream:
    """Frames (H, W, 3) uint8 RGB, in order, with what is known about them up front.

    names: one per frame (file stems for a folder, zero-padded indices otherwise); None when the number of
    frames is unknown (a plain iterator).
    """

    frames: Iterator[np.ndarray]
    num_frames: int | None
    fps: float | None
    names: list[str] | None
    source: str


def _check_frame(frame: np.ndarray, index: int, source: str, size: tuple[int, int] | None) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ValueError(f"{source}: frame {index} must be an (H, W, 3) RGB array, got {shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{source}: frame {index} must be uint8 (0-255), got {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"{source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                         f"but earlier frames are {size[1]}x{size[0]}")
    return frame


def _checked(frames: Iterable[np.ndarray], source: str) -> Iterator[np.ndarray]:
    size = None
    for index, frame in enumerate(frames):
        yield _check_frame(frame, index, source, size)
        size = frame.shape[:2]


def read_image_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises naming the file if it cannot be read or is a truncated JPEG."""
    return cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)


def _folder_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths:
        yield read_image_rgb(path)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_frames(source: FrameInput) -> FrameStream:
    """A stream of RGB frames from a video file, a folder of images (sorted by name), a sequence of arrays,
    or any iterable of arrays."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: video or frame folder not found")
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ValueError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return FrameStream(_checked(_folder_frames(images), str(path)), len(images), None,
                               [p.stem for p in images], str(path))
        capture = cv2.VideoCapture(str(path))
        opened = capture.isOpened()
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if opened else 0.0
        capture.release()
        if not opened:
            raise ValueError(f"{path}: cannot open as a video (or give a folder of frames)")
        # CAP_PROP_FRAME_COUNT is an estimate for some containers: count what is actually decoded.
        return FrameStream(_checked(_video_frames(path), str(path)), None, fps or None, None, str(path))
    if isinstance(source, Sequence):
        names = [f"{i:05d}" for i in range(len(source))]
        return FrameStream(_checked(iter(source), "frames"), len(source), None, names, "frames")
    return FrameStream(_checked(iter(source), "frames"), None, None, None, "frames")


def id_colours(ids: np.ndarray | int) -> np.ndarray:
    """(..., 3) uint8 RGB colour of each integer id: the DAVIS palette of the result PNGs (`formats.davis`), id 0
    black; ids past 255 cycle through its 255 object colours."""
    ids = np.asarray(ids)
    return DAVIS_PALETTE[np.where(ids > 0, (ids - 1) % 255 + 1, 0)]


LEGEND_MIN_SIDE = 160  # smaller frames get no legend: its 20-pixel lines would cover them (masks.json names the ids)


def draw_overlay(frame: np.ndarray, ids: np.ndarray, labels: Mapping[int, str], alpha: float = 0.5) -> np.ndarray:
    """Blend per-id colours over an RGB frame, outline each id, and draw a legend of ids and names (on frames of
    at least `LEGEND_MIN_SIDE` pixels a side).

    frame (H, W, 3) uint8 RGB; ids (H, W) integer map, 0 = nothing; labels: id -> text for the legend.
    """
    if ids.shape != frame.shape[:2]:
        raise ValueError(f"id map {ids.shape} does not match frame {frame.shape[:2]}")
    present = [int(i) for i in np.unique(ids) if i != 0]
    out = frame.copy()
    fg = ids > 0
    out[fg] = (alpha * id_colours(ids[fg]) + (1 - alpha) * frame[fg]).astype(np.uint8)
    for obj in present:
        contours, _ = cv2.findContours((ids == obj).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in id_colours(obj)), 2)
    if min(frame.shape[:2]) < LEGEND_MIN_SIDE:
        return out
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    for row, obj in enumerate(sorted(labels)):
        y = 18 + 20 * row
        cv2.rectangle(out, (6, y - 12), (20, y + 2), tuple(int(c) for c in id_colours(obj)), -1)
        text = f"{obj}: {labels[obj]}"
        cv2.putText(out, text, (26, y), font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, (26, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


# The codec of each overlay container, all in OpenCV's own FFmpeg build: MPEG-4 part 2 (H.264 is not in it), Motion
# JPEG, and VP8, which browsers play (OpenCV writes VP8 under WebM's own tag; players do not mind).
OVERLAY_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
# OpenCV prints "tag ... 'VP80' is not supported with codec id 139 and format 'webm / WebM'" straight to the
# process's stderr for every WebM it opens, whatever fourcc it is given: noise a user would read as a failure.
_NOISY_SUFFIXES = (".webm",)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (C code's prints bypass sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class OverlayVideoWriter:
    """Writes overlay frames to an .mp4, .avi or .webm file (`OVERLAY_CODECS`); the file appears complete or not
    at all.

    Use as a context manager; frames are (H, W, 3) uint8 RGB of one size.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in OVERLAY_CODECS:
            raise ValueError(f"{self.path}: an overlay video is {', '.join(OVERLAY_CODECS)}")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._pending: PendingFile | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._pending = PendingFile(self.path)
            suffix = self.path.suffix.lower()
            fourcc = cv2.VideoWriter_fourcc(*OVERLAY_CODECS[suffix])
            with _native_stderr_silenced() if suffix in _NOISY_SUFFIXES else nullcontext():
                self._writer = cv2.VideoWriter(str(self._pending.tmp), fourcc, self.fps,
                                               (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise RuntimeError(f"cannot write video {self.path} (codec unavailable?)")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if keep:
            self._pending.commit()
        else:
            self._pending.discard()

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)


# ============================================================================================== results and outputs

@dataclass(frozen=True)
class FrameResult:
    """What the predictor found in one frame.

    object_ids: one per mask: VOS/PET the object ids given; VIS the rank (1 = best) of the (track, class) pair in
        the video's top-K (a track may be chosen with two classes, as the benchmark's results files do); VPS the
        track ids of the painted thing segments.
    masks: (N, H, W) bool, in `object_ids` order. Masks of one frame may overlap (VIS pairs of different
        classes; VOS on an overlap frame, where two clips' masks meet); `id_map()` paints later ones on top.
    class_ids: 0-based class index in the vocabulary (VIS, VPS); None for VOS/PET.
    class_names: the vocabulary's name of each class; None for VOS/PET.
    scores: VIS the pair's score; None otherwise.
    semantic: VPS only: (H, W) int32 class index of every pixel, stuff and things; None otherwise.
    image: the frame itself, (H, W, 3) uint8 RGB, as the predictor read it.
    """

    frame_index: int
    object_ids: list[int]
    masks: np.ndarray
    class_ids: list[int | None]
    class_names: list[str | None]
    scores: list[float | None]
    semantic: np.ndarray | None = None
    image: np.ndarray | None = None

    def id_map(self) -> np.ndarray:
        """(H, W) int32: the id of the last mask covering each pixel, 0 where none does."""
        ids = np.zeros(self.masks.shape[1:], np.int32)
        for object_id, mask in zip(self.object_ids, self.masks):
            ids[mask] = object_id
        return ids


def write_video_outputs(output_dir: Path, results: Iterable[tuple[int, FrameResult]],
                        frame_names: Sequence[str] | None, fps: float, *, source: str, task: str,
                        vocabulary: str | None, class_names: Sequence[str], overlay_suffix: str = ".mp4") -> float:
    """Write masks/, masks.json and overlay.mp4 (module docstring) as the results stream in; each result carries
    its frame (`FrameResult.image`). Every file appears complete or not at all. `overlay_suffix` picks the overlay's
    container and codec (`OVERLAY_CODECS`; ".webm" is what browsers play).

    `results` is iterated here (it runs the model) while a background thread encodes and writes, in order, up to
    `WRITE_AHEAD` results behind; an error of either is raised here. Returns the seconds the writer was busy."""
    (output_dir / MASKS_DIR).mkdir(parents=True, exist_ok=True)
    colours = _class_colours(vocabulary) if task == "vps" else None

    def write(items: Iterator[tuple[int, FrameResult]]) -> None:
        with atomic_open(output_dir / MASKS_JSON, "w") as rle_json, \
                OverlayVideoWriter((output_dir / OVERLAY_VIDEO).with_suffix(overlay_suffix), fps=fps) as overlay:
            # Streamed: the header, then one frame's entry at a time.
            header = {"source": source, "task": task, "vocabulary": vocabulary}
            rle_json.write("{" + "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in header.items())
                           + '"frames": [')
            for count, (index, result) in enumerate(items):
                name = frame_names[index] if frame_names else f"{index:05d}"
                _write_mask_png(output_dir / MASKS_DIR / f"{name}.png", result)
                rle_json.write((",\n" if count else "\n") + json.dumps(_frame_json(index, name, result, class_names)))
                overlay.write(_overlay(result, colours))
            rle_json.write("\n]}\n")

    _, busy_seconds = consume_in_background(results, write, depth=WRITE_AHEAD, name="video writer")
    return busy_seconds


def video_output_files(output_dir: Path) -> list[Path]:
    """What `write_video_outputs` and `write_run_record` wrote into `output_dir`, and the temporary files of
    writes a killed run left behind."""
    names = (MASKS_JSON, RUN_JSON, *(Path(OVERLAY_VIDEO).with_suffix(suffix).name for suffix in OVERLAY_CODECS))
    files = [output_dir / name for name in names if (output_dir / name).exists()]
    files += [leftover for name in names for leftover in PendingFile.leftovers(output_dir / name)]
    masks = output_dir / MASKS_DIR
    if masks.is_dir():
        files += list(masks.glob("*.png")) + PendingFile.leftovers(masks / "*.png")
    return sorted(set(files))  # pathlib's "*" matches hidden names too, so a leftover can be found twice


def clear_video_outputs(output_dir: Path) -> None:
    """Delete `video_output_files`; the user's other files in the folder stay."""
    for path in video_output_files(output_dir):
        path.unlink()


def _write_mask_png(path: Path, result: FrameResult) -> None:
    if result.semantic is None:
        write_label_png(path, result.id_map())
        return
    ids = result.id_map()
    if result.semantic.max(initial=0) > 255 or ids.max(initial=0) > 65535:
        raise ValueError(f"{path}: classes above 255 or tracks above 65535 do not fit the R/G/B encoding")
    rgb = np.stack([result.semantic, ids // 256, ids % 256], -1).astype(np.uint8)
    with atomic_open(path, "wb") as handle:
        Image.fromarray(rgb).save(handle, format="PNG")


def _frame_json(index: int, name: str, result: FrameResult, class_names: Sequence[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"frame_index": index, "name": name, "objects": [
        {"id": object_id, "class_id": class_id, "class_name": class_name, "score": score, "rle": encode_rle(mask)}
        for object_id, mask, class_id, class_name, score
        in zip(result.object_ids, result.masks, result.class_ids, result.class_names, result.scores)
    ]}
    if result.semantic is not None:
        things = result.id_map() > 0
        stuff = [int(c) for c in np.unique(result.semantic[~things])]
        entry["stuff"] = [{"class_id": c, "class_name": class_names[c], "rle": encode_rle((result.semantic == c)
                                                                                            & ~things)}
                          for c in stuff]
    return entry


def _class_colours(vocabulary: str) -> np.ndarray:
    """(C, 3) uint8 RGB colour per class: the dataset's own where it has them, else the DAVIS palette."""
    vocab = get_vocabulary(vocabulary)
    if vocab.colours is not None:
        return np.asarray(vocab.colours, np.uint8)
    return id_colours(np.arange(1, len(vocab.names) + 1))


def _overlay(result: FrameResult, class_colours: np.ndarray | None) -> np.ndarray:
    """The result's frame with the result drawn over it: VPS stuff tinted with its class colour, objects and things
    blended and outlined, with a legend."""
    if result.image is None:
        raise ValueError(f"frame {result.frame_index}: the result carries no image to draw the overlay on")
    frame, ids = result.image, result.id_map()
    if result.semantic is not None:
        frame = frame.copy()
        stuff = ids == 0
        frame[stuff] = (0.5 * class_colours[result.semantic[stuff]] + 0.5 * frame[stuff]).astype(np.uint8)
    labels = {}
    for object_id, class_name, score in zip(result.object_ids, result.class_names, result.scores):
        text = class_name if class_name is not None else "object"
        labels[object_id] = text if score is None else f"{text} {score:.2f}"
    return draw_overlay(frame, ids, labels)


@dataclass(frozen=True)
class MaskEntry:
    """One object (or VPS stuff class) of one frame of `masks.json`."""

    mask: np.ndarray            # (H, W) bool
    object_id: int | None       # None for stuff
    class_id: int | None
    class_name: str | None
    score: float | None


def read_masks_json(path: str | os.PathLike) -> tuple[dict[str, Any], list[tuple[int, str, list[MaskEntry]]]]:
    """`masks.json` as `write_video_outputs` writes it: its header (source, task, vocabulary) and per frame
    (frame index, name, its objects then its stuff classes, masks decoded)."""
    where = str(path)
    content = read_json(path)
    frames = []
    for i, frame in enumerate(json_list(content, "frames", where)):
        entry = f"{where}: frames[{i}]"
        masks = [MaskEntry(decode_rle(json_field(o, "rle", entry)), o.get("id"), o.get("class_id"),
                           o.get("class_name"), o.get("score"))
                 for o in json_field(frame, "objects", entry) + frame.get("stuff", [])]
        frames.append((int(json_field(frame, "frame_index", entry)), str(json_field(frame, "name", entry)), masks))
    return {key: content.get(key) for key in ("source", "task", "vocabulary")}, frames
