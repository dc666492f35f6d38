"""Segment your own videos from Python: the API under `infer.py --video`, in the manner of SAM 2's video predictor.

    predictor = tarvis_fast.VideoPredictor.from_checkpoint("checkpoints/swin-tiny_finetune/090000.pth")
    for frame_index, result in predictor.segment("clip.mp4", task="vos", masks={0: first_frame_ids}):
        result.object_ids, result.masks          # [1, 2], (2, H, W) bool
    predictor.segment(frames, task="pet", points={1: (120, 80), 2: (30, (400, 210))})  # id: (x, y) | (frame, (x, y))
    predictor.segment("frames/", task="vis", vocabulary="youtube_vis")                 # class ids, names, scores
    predictor.segment("frames/", task="vps", vocabulary="kitti_step")                  # things + result.semantic

`frames` is a video file, a folder of images, a sequence of (H, W, 3) uint8 RGB arrays or any iterable of them.
Frames stream in a clip at a time and results stream out as they become final: VOS/PET frames clip by clip,
VIS and VPS frames once the whole video is seen (a track's class is averaged over all its clips), then lazily.
The clip schedule needs the number of frames up front: a video file is counted by decoding it once without
converting the frames, and a plain iterator is first spooled to a temporary folder on disk.

Each task takes a benchmark's inference settings (clip length, overlap, resize; SPEC §4): vos DAVIS's, pet
BURST's, vis/vps those of the vocabulary's dataset; `clip_length`, `frame_overlap`, `min_dim` and
`disable_resize` override them as the CLI flags do.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from tarvis_fast.config import Config, load_config
from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.inference.accumulate import PanopticFrame, VisTrack, VosFrame
from tarvis_fast.inference.benchmarks import ObjectReference
from tarvis_fast.inference.runner import ClipRunner, ClipSettings, TaskSpec, VisTask, VosTask, VpsTask
from tarvis_fast.inference.video import FrameInput, open_frames
from tarvis_fast.inference.vocabularies import vocabulary as get_vocabulary
from tarvis_fast.model.build import load_model

TASKS = ("vos", "pet", "vis", "vps")
SETTINGS_DATASET = {"vos": "DAVIS", "pet": "BURST"}  # whose inference settings vos/pet take
VOCABULARIES = {"vis": ("youtube_vis", "ovis"), "vps": ("kitti_step", "cityscapes_vps", "vipseg")}

MaskInput = np.ndarray | Mapping[int, np.ndarray]
PointInput = tuple[float, float] | tuple[int, tuple[float, float]]


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
    """

    frame_index: int
    object_ids: list[int]
    masks: np.ndarray
    class_ids: list[int | None]
    class_names: list[str | None]
    scores: list[float | None]
    semantic: np.ndarray | None = None

    def id_map(self) -> np.ndarray:
        """(H, W) int32: the id of the last mask covering each pixel, 0 where none does."""
        ids = np.zeros(self.masks.shape[1:], np.int32)
        for object_id, mask in zip(self.object_ids, self.masks):
            ids[mask] = object_id
        return ids


class VideoPredictor:
    """Runs a TarViS model on videos for any of its four tasks (see the module docstring).

    Args:
        model: the network; it is put in eval mode and moved to `device`.
        cfg: the config the model was built from (its per-dataset inference settings are used).
        device: default CUDA when available, else CPU.
        amp: bf16 autocast where the device supports it.
        compile: compile the network once, for every later video (see `runner.compile_model`); a string or a
            callable names the torch.compile backend.
        progress: show a progress bar over each video's clips.
    """

    def __init__(self, model: nn.Module, cfg: Config, *, device: str | torch.device | None = None,
                 amp: bool = False, compile: bool | str | Callable = False, progress: bool = False) -> None:
        self.cfg = cfg
        self.runner = ClipRunner(model.eval(), device=device, amp=amp, compile=compile, progress=progress)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, config: str | os.PathLike | Config | None = None,
                        device: str | torch.device | None = None, amp: bool = False,
                        compile: bool | str | Callable = False,
                        progress: bool = False, trusted: bool = False) -> VideoPredictor:
        """Load a checkpoint with the `config.yaml` beside it (or `config`); see `load_model`."""
        if not isinstance(config, Config):  # read here too: the inference settings come from it
            config = load_config(Path(config) if config is not None else Path(path).parent / "config.yaml")
        model = load_model(path, config=config, trusted=trusted)
        return cls(model, config, device=device, amp=amp, compile=compile, progress=progress)

    @classmethod
    def from_model(cls, model: nn.Module, cfg: Config, **kwargs: Any) -> VideoPredictor:
        """Wrap a model already in memory (e.g. while training); keyword arguments as the constructor's."""
        return cls(model, cfg, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def segment(self, frames: FrameInput, task: str = "vos", *, masks: Mapping[int, MaskInput] | None = None,
                points: Mapping[int, PointInput] | None = None, vocabulary: str | None = None,
                clip_length: int | None = None, frame_overlap: int | None = None, min_dim: int | None = None,
                disable_resize: bool = False, consistent_final_clip: bool = True,
                reuse_points_on_overlap: bool = False) -> Iterator[tuple[int, FrameResult]]:
        """Segment a video; yields (frame index, FrameResult) for every frame, in order.

        task: "vos" (objects given by `masks`), "pet" (objects given by `points`), "vis" or "vps" (the classes of
            `vocabulary`: youtube_vis | ovis for vis, kitti_step | cityscapes_vps | vipseg for vps).
        masks: {frame index: (H, W) integer id map (0 = background) or {object id: (H, W) bool mask}}. An object
            first given on a later frame joins there; one given again is re-anchored to that mask.
        points: {object id: (x, y)} on frame 0, or {object id: (frame index, (x, y))}, in pixels.
        consistent_final_clip: stitch the video's last clip like the others (the default for your videos);
            False reproduces the original's stitching, which the benchmarks use and which, for one, leaves a video
            shorter than a clip without masks (a warning says so).
        reuse_points_on_overlap: pet: a point on a frame that two clips share is used in the first clip only (the
            default for your videos); True reproduces the original, which gives it to the second clip as well,
            beside the object's propagated mask (`VosTask`).
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        dataset = self._settings_dataset(task, vocabulary)
        inference = self.cfg.datasets[dataset].inference
        settings = ClipSettings.from_config(inference, clip_length=clip_length, frame_overlap=frame_overlap,
                                            min_dim=min_dim, disable_resize=disable_resize)
        stream, num_frames = _counted(frames)
        first = next(stream, None)
        if first is None:
            raise ValueError("frames: the video has no frames")
        size = first.shape[:2]
        stream = itertools.chain([first], stream)

        spec: TaskSpec
        if task in ("vos", "pet"):
            references = _references(task, masks, points, num_frames, size)
            spec = VosTask(references, consistent_final_clip, reuse_points_on_overlap)
        else:
            for name, value in (("masks", masks), ("points", points)):
                if value:
                    raise ValueError(f"task {task!r} takes no {name}; they are for vos / pet")
            if task == "vis":
                spec = VisTask.from_config(dataset, inference)
            else:
                spec = VpsTask.from_config(dataset, get_vocabulary(dataset).thing_classes, inference)
        results = self.runner.run(stream, num_frames, size, spec, settings)
        return self._frame_results(results, task, dataset, num_frames, size)

    def _settings_dataset(self, task: str, vocabulary: str | None) -> str:
        """The config dataset whose inference settings (and, for vis/vps, semantic queries) the task uses."""
        if task in SETTINGS_DATASET:
            if vocabulary is not None:
                raise ValueError(f"task {task!r} is class-agnostic and takes no vocabulary")
            return SETTINGS_DATASET[task]
        choices = VOCABULARIES[task]
        if vocabulary is None or vocabulary.lower() not in choices:
            raise ValueError(f"task {task!r} needs vocabulary= one of {', '.join(choices)}, got {vocabulary!r}")
        dataset = vocabulary.upper()
        known = getattr(self.runner.model, "datasets", None)
        if known is not None and dataset not in known:
            raise ValueError(f"the model has no semantic queries for {dataset} (it was trained with: "
                             f"{', '.join(known) or 'none'})")
        return dataset

    @staticmethod
    def _frame_results(results: Iterator[VisTrack | PanopticFrame | VosFrame], task: str, dataset: str,
                       num_frames: int, size: tuple[int, int]) -> Iterator[tuple[int, FrameResult]]:
        if task in ("vos", "pet"):
            for frame in results:
                yield frame.frame_index, _vos_frame(frame)
        elif task == "vps":
            names = get_vocabulary(dataset).names
            for frame in results:
                yield frame.frame_index, _panoptic_frame(frame, names)
        else:
            names = get_vocabulary(dataset).names
            tracks = list(results)  # VIS results are whole tracks (at most tracks_per_video), all at the video's end
            for frame in range(num_frames):
                yield frame, _vis_frame(frame, tracks, names, size)


# ============================================================================================== results per frame

def _vos_frame(frame: VosFrame) -> FrameResult:
    ids = list(frame.masks)
    masks = np.stack(list(frame.masks.values())) if ids else np.zeros((0, *frame.size), bool)
    none = [None] * len(ids)
    return FrameResult(frame.frame_index, ids, masks, none, none, none)


def _vis_frame(frame: int, tracks: Sequence[VisTrack], names: Sequence[str], size: tuple[int, int]) -> FrameResult:
    present = [(rank, track) for rank, track in enumerate(tracks, 1) if track.segmentations[frame] is not None]
    masks = [decode_rle(track.segmentations[frame]) for _, track in present]
    classes = [track.category_id - 1 for _, track in present]  # results files count classes from 1
    return FrameResult(
        frame_index=frame,
        object_ids=[rank for rank, _ in present],
        masks=np.stack(masks) if masks else np.zeros((0, *size), bool),
        class_ids=classes,
        class_names=[names[c] for c in classes],
        scores=[track.score for _, track in present],
    )


def _panoptic_frame(frame: PanopticFrame, names: Sequence[str]) -> FrameResult:
    ids = sorted(frame.segments)
    masks = np.stack([frame.instance == i for i in ids]) if ids else np.zeros((0, *frame.semantic.shape), bool)
    classes = [frame.segments[i] for i in ids]
    return FrameResult(frame.frame_index, ids, masks, classes, [names[c] for c in classes], [None] * len(ids),
                       semantic=frame.semantic)


# ============================================================================================== inputs

def _references(task: str, masks: Mapping[int, MaskInput] | None, points: Mapping[int, PointInput] | None,
                num_frames: int, size: tuple[int, int]) -> list[ObjectReference]:
    """The user's masks (vos) or points (pet) as object references; errors name the argument and entry."""
    given, other = ("masks", "points") if task == "vos" else ("points", "masks")
    if not (masks if task == "vos" else points):
        raise ValueError(f"task {task!r} needs {given}=")
    if masks if task == "pet" else points:
        raise ValueError(f"task {task!r} takes {given}, not {other}")
    if task == "vos":
        return [ref for frame, value in _items(masks, "masks") for ref in _mask_references(frame, value, num_frames,
                                                                                            size)]
    return [_point_reference(object_id, value, num_frames, size) for object_id, value in _items(points, "points")]


def _items(mapping: Mapping, name: str) -> list[tuple[int, Any]]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(mapping).__name__}")
    for key in mapping:
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise ValueError(f"{name}: keys must be ints, got {key!r}")
    return sorted((int(k), v) for k, v in mapping.items())


def _mask_references(frame: int, value: MaskInput, num_frames: int, size: tuple[int, int]) -> list[ObjectReference]:
    where = f"masks[{frame}]"
    if not 0 <= frame < num_frames:
        raise ValueError(f"{where}: frame index out of range: the video has frames 0..{num_frames - 1}")
    if isinstance(value, Mapping):
        objects = {}
        for object_id, mask in _items(value, where):
            mask = np.asarray(mask)
            if mask.shape != size or mask.dtype != bool:
                raise ValueError(f"{where}[{object_id}]: must be an (H, W) = {size} bool mask, got {mask.dtype} "
                                 f"{mask.shape}")
            objects[object_id] = mask
    else:
        ids = np.asarray(value)
        if ids.shape != size or not (ids.dtype == bool or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"{where}: must be an (H, W) = {size} integer id map (0 = background) or a dict of bool "
                             f"masks, got {ids.dtype} {ids.shape}")
        if ids.dtype == bool:
            ids = ids.astype(np.int32)  # one object, id 1
        objects = {int(i): ids == i for i in np.unique(ids) if i != 0}
    for object_id, mask in objects.items():
        if object_id < 1:
            raise ValueError(f"{where}: object ids must be >= 1 (0 is background), got {object_id}")
        if not mask.any():
            raise ValueError(f"{where}: object {object_id} has an empty mask")
    if not objects:
        raise ValueError(f"{where}: holds no object")
    return [ObjectReference(object_id, frame, mask, None) for object_id, mask in objects.items()]


def _point_reference(object_id: int, value: PointInput, num_frames: int, size: tuple[int, int]) -> ObjectReference:
    where = f"points[{object_id}]"
    frame, point = 0, value
    if isinstance(value, Sequence) and len(value) == 2 and isinstance(value[1], Sequence):
        frame, point = value
    try:
        x, y = (float(c) for c in point)
        frame = int(frame)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: give (x, y) or (frame index, (x, y)), got {value!r}") from None
    if object_id < 1:
        raise ValueError(f"{where}: object ids must be >= 1, got {object_id}")
    if not 0 <= frame < num_frames:
        raise ValueError(f"{where}: frame {frame} is out of range: the video has frames 0..{num_frames - 1}")
    if not (0 <= x < size[1] and 0 <= y < size[0]):
        raise ValueError(f"{where}: (x, y) = ({x}, {y}) lies outside the {size[1]}x{size[0]} (W x H) frame")
    return ObjectReference(object_id, frame, None, (y, x))


# ============================================================================================== frames with a count

def count_video_frames(path: Path) -> int:
    """Frames of a video file, counted by decoding without colour conversion (containers' frame counts are
    estimates)."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def _counted(frames: FrameInput) -> tuple[Iterator[np.ndarray], int]:
    """(frame iterator, number of frames) for any input `open_frames` takes."""
    stream = open_frames(frames)
    if stream.num_frames is not None:
        return stream.frames, stream.num_frames
    if isinstance(frames, (str, os.PathLike)):  # a video file
        return stream.frames, count_video_frames(Path(frames))
    return _spooled(stream.frames)


def _spooled(frames: Iterable[np.ndarray]) -> tuple[Iterator[np.ndarray], int]:
    """Write an iterator's frames to a temporary folder (raw .npy), then read them back one at a time; the folder
    goes when the returned iterator is exhausted or collected."""
    folder = tempfile.TemporaryDirectory(prefix="tarvis-frames-")
    count = 0
    for count, frame in enumerate(frames, 1):
        np.save(Path(folder.name) / f"{count - 1:08d}.npy", frame)

    def read() -> Iterator[np.ndarray]:
        with folder:
            for index in range(count):
                yield np.load(Path(folder.name) / f"{index:08d}.npy")

    return read(), count
