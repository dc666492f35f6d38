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
converting the frames, and a plain iterator is first spooled to a temporary folder on disk. Each result carries
its frame (`result.image`), read once for the network (VIS, whose results come at the end, reads them again).
Frames are read and resized ahead in a background thread (`ClipRunner`), so a source given as an iterator is
iterated in that thread.

Each task takes a benchmark's inference settings (clip length, overlap, resize; SPEC §4): vos DAVIS's, pet
BURST's, vis/vps those of the vocabulary's dataset; `clip_length`, `frame_overlap`, `min_dim` and
`disable_resize` override them as the CLI flags do.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from tarvis_fast.config import Config, load_checkpoint_config, load_config
from tarvis_fast.datasets import vocabulary as get_vocabulary
from tarvis_fast.formats.davis import VOID_ID
from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.inference.accumulate import PanopticFrame, VisTrack
from tarvis_fast.inference.background import Prefetcher
from tarvis_fast.inference.propagation import VosFrame
from tarvis_fast.inference.runner import (
    PREFETCH_FRAMES,
    ClipRunner,
    ClipSettings,
    Request,
    VisRequest,
    VosRequest,
    VpsRequest,
)
from tarvis_fast.inference.sequences import ObjectReference
from tarvis_fast.inference.video import (
    SETTINGS_DATASET,
    FrameInput,
    FrameResult,
    open_frames,
    settings_dataset,
)
from tarvis_fast.model.build import load_model
from tarvis_fast.tasks import Task

MaskInput = np.ndarray | Mapping[int, np.ndarray]
PointInput = tuple[float, float] | tuple[int, tuple[float, float]]


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
            config = load_config(config) if config is not None else load_checkpoint_config(path)
        model = load_model(path, config=config, trusted=trusted)
        return cls(model, config, device=device, amp=amp, compile=compile, progress=progress)

    @classmethod
    def from_model(cls, model: nn.Module, cfg: Config, **kwargs: Any) -> VideoPredictor:
        """Wrap a model already in memory (e.g. while training); keyword arguments as the constructor's."""
        return cls(model, cfg, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def segment(self, frames: FrameInput, task: str | Task = "vos", *,
                masks: Mapping[int, MaskInput] | None = None, points: Mapping[int, PointInput] | None = None,
                vocabulary: str | None = None, clip_length: int | None = None, frame_overlap: int | None = None,
                min_dim: int | None = None, disable_resize: bool = False, consistent_final_clip: bool = True,
                reuse_points_on_overlap: bool = False) -> Iterator[tuple[int, FrameResult]]:
        """Segment a video; yields (frame index, FrameResult) for every frame, in order, each result holding its
        frame (`result.image`), so that nothing needs to decode the video again.

        task: "vos" (objects given by `masks`), "pet" (objects given by `points`), "vis" or "vps" (the classes of
            `vocabulary`: youtube_vis | ovis for vis, kitti_step | cityscapes_vps | vipseg for vps); or a `Task`.
        masks: {frame index: (H, W) integer id map (0 = background) or {object id: (H, W) bool mask}}. In an id
            map 255 is void and ignored, as in DAVIS annotations (a pixel the annotator left open, not an object);
            to track an object with id 255, give it as a bool mask. An object first given on a later frame joins
            there; one given again is re-anchored to that mask.
        points: {object id: (x, y)} on frame 0, or {object id: (frame index, (x, y))}, in pixels.
        consistent_final_clip: stitch the video's last clip like the others (the default for your videos);
            False reproduces the original's stitching, which the benchmarks use and which, for one, leaves a video
            shorter than a clip without masks (a warning says so).
        reuse_points_on_overlap: pet: a point on a frame that two clips share is used in the first clip only (the
            default for your videos); True reproduces the original, which gives it to the second clip as well,
            beside the object's propagated mask (`VosRequest`).
        """
        task = Task.parse(task)
        dataset = self._settings_dataset(task, vocabulary)
        inference = self.cfg.datasets[dataset].inference
        settings = ClipSettings.from_config(inference, clip_length=clip_length, frame_overlap=frame_overlap,
                                            min_dim=min_dim, disable_resize=disable_resize)
        video = _CountedFrames(frames)
        stream = video.read()
        first = next(stream, None)
        if first is None:
            raise ValueError("frames: the video has no frames")
        size = first.shape[:2]
        stream = itertools.chain([first], stream)

        request: Request
        if task.guided_by_objects:
            references = _references(task, masks, points, video.count, size)
            request = VosRequest(references, consistent_final_clip, reuse_points_on_overlap)
        else:
            for name, value in (("masks", masks), ("points", points)):
                if value:
                    raise ValueError(f"task {task.short_name!r} takes no {name}; they are for vos / pet")
            if task is Task.VIS:
                request = VisRequest.from_config(dataset, inference)
            else:
                request = VpsRequest.from_config(dataset, get_vocabulary(dataset).thing_classes, inference)
        if task is Task.VIS:
            return self._vis_results(video, stream, size, request, settings, dataset)
        return self._streamed_results(video, stream, size, request, settings, task, dataset)

    def _settings_dataset(self, task: Task, vocabulary: str | None) -> str:
        """The config dataset whose inference settings (and, for vis/vps, semantic queries) the task uses."""
        dataset = settings_dataset(task, vocabulary)
        if task in SETTINGS_DATASET:
            return dataset
        known = getattr(self.runner.model, "datasets", None)
        if known is not None and dataset not in known:
            raise ValueError(f"the model has no semantic queries for {dataset} (it was trained with: "
                             f"{', '.join(known) or 'none'})")
        return dataset

    def _streamed_results(self, video: _CountedFrames, stream: Iterator[np.ndarray], size: tuple[int, int],
                          request: Request, settings: ClipSettings, task: Task,
                          dataset: str) -> Iterator[tuple[int, FrameResult]]:
        """VOS/PET/VPS: results follow the frames by at most a clip, so each frame is held until its result."""
        held: deque[np.ndarray] = deque()   # frames read by the runner whose results are not out yet
        first_held = 0                      # the frame index of held[0]

        def read_and_hold() -> Iterator[np.ndarray]:
            for frame in stream:
                held.append(frame)
                yield frame

        names = get_vocabulary(dataset).names if task is Task.VPS else ()
        for frame in self.runner.run(read_and_hold(), video.count, size, request, settings):
            while first_held < frame.frame_index:  # frames before the first reference have no result of their own
                held.popleft()
                first_held += 1
            image = held.popleft()
            first_held += 1
            result = _panoptic_frame(frame, names, image) if task is Task.VPS else _vos_frame(frame, image)
            yield frame.frame_index, result

    def _vis_results(self, video: _CountedFrames, stream: Iterator[np.ndarray], size: tuple[int, int],
                     request: Request, settings: ClipSettings, dataset: str) -> Iterator[tuple[int, FrameResult]]:
        """VIS: the video's tracks are known at its end; the frames are then read again for their results."""
        tracks = list(self.runner.run(stream, video.count, size, request, settings))  # at most tracks_per_video
        names = get_vocabulary(dataset).names
        with Prefetcher(video.read(), PREFETCH_FRAMES, name="frames") as images:
            for index, image in enumerate(images):
                yield index, _vis_frame(index, tracks, names, image)


# ============================================================================================== results per frame

def _vos_frame(frame: VosFrame, image: np.ndarray) -> FrameResult:
    ids = list(frame.masks)
    masks = np.stack(list(frame.masks.values())) if ids else np.zeros((0, *frame.size), bool)
    none = [None] * len(ids)
    return FrameResult(frame.frame_index, ids, masks, none, none, none, image=image)


def _vis_frame(frame: int, tracks: Sequence[VisTrack], names: Sequence[str], image: np.ndarray) -> FrameResult:
    present = [(rank, track) for rank, track in enumerate(tracks, 1) if track.segmentations[frame] is not None]
    masks = [decode_rle(track.segmentations[frame]) for _, track in present]
    classes = [track.category_id - 1 for _, track in present]  # results files count classes from 1
    return FrameResult(
        frame_index=frame,
        object_ids=[rank for rank, _ in present],
        masks=np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool),
        class_ids=classes,
        class_names=[names[c] for c in classes],
        scores=[track.score for _, track in present],
        image=image,
    )


def _panoptic_frame(frame: PanopticFrame, names: Sequence[str], image: np.ndarray) -> FrameResult:
    ids = sorted(frame.segments)
    masks = np.stack([frame.instance == i for i in ids]) if ids else np.zeros((0, *frame.semantic.shape), bool)
    classes = [frame.segments[i] for i in ids]
    return FrameResult(frame.frame_index, ids, masks, classes, [names[c] for c in classes], [None] * len(ids),
                       semantic=frame.semantic, image=image)


# ============================================================================================== inputs

def _references(task: Task, masks: Mapping[int, MaskInput] | None, points: Mapping[int, PointInput] | None,
                num_frames: int, size: tuple[int, int]) -> list[ObjectReference]:
    """The user's masks (vos) or points (pet) as object references; errors name the argument and entry."""
    given, other = ("masks", "points") if task is Task.VOS else ("points", "masks")
    if not (masks if task is Task.VOS else points):
        raise ValueError(f"task {task.short_name!r} needs {given}=")
    if masks if task is Task.PET else points:
        raise ValueError(f"task {task.short_name!r} takes {given}, not {other}")
    if task is Task.VOS:
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
        objects = {int(i): ids == i for i in np.unique(ids) if i not in (0, VOID_ID)}
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


class _CountedFrames:
    """The user's frames with their number known up front (the clip schedule needs it), readable more than once.

    A folder or a sequence of arrays is counted as it is; a video file by decoding it once without converting the
    frames (containers' frame counts are estimates); a plain iterator is first spooled to a temporary folder on
    disk (raw .npy), which goes when this object does.
    """

    def __init__(self, frames: FrameInput) -> None:
        stream = open_frames(frames)
        self._frames, self._spool = frames, None
        if stream.num_frames is not None:
            self.count = stream.num_frames
        elif isinstance(frames, (str, os.PathLike)):  # a video file
            self.count = count_video_frames(Path(frames))
        else:
            self._spool = tempfile.TemporaryDirectory(prefix="tarvis-frames-")
            self.count = 0
            for self.count, frame in enumerate(stream.frames, 1):
                np.save(Path(self._spool.name) / f"{self.count - 1:08d}.npy", frame)
        self._unread: Iterator[np.ndarray] | None = stream.frames if self._spool is None else None

    def read(self) -> Iterator[np.ndarray]:
        """The frames, (H, W, 3) uint8 RGB, from the first; the first call reuses the stream that counted them."""
        if self._unread is not None:
            stream, self._unread = self._unread, None
            return stream
        if self._spool is not None:
            folder = Path(self._spool.name)
            return (np.load(folder / f"{index:08d}.npy") for index in range(self.count))
        return open_frames(self._frames).frames
