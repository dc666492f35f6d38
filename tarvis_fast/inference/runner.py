"""The clip loop: one video through the network clip by clip, stitched by its task's accumulator (SPEC §6).

    runner = ClipRunner(model, device="cuda", amp=True, compile=True)
    settings = ClipSettings.from_config(cfg.datasets["DAVIS"].inference)
    for frame in runner.run(frames, num_frames=50, size=(480, 854), request=VosRequest(references), settings=settings):
        ...   # VosFrame / VisTrack / PanopticFrame, as soon as the accumulator makes them final

The benchmark CLI and `VideoPredictor` both run videos through `ClipRunner.run`; only what feeds it and what
consumes its results differ.

Per clip of the schedule (`clip_schedule`): the clip's frames are read from the stream (frames before the first
clip are read and dropped; a clip's overlap frames are kept from the previous clip, already resized), resized by
the request's `ImagesResizer`, the network runs on them under `torch.inference_mode()` (and bf16 autocast with
`amp`), and the task's accumulator stitches its output. Reading, checking and resizing run in a background thread
(`background.Prefetcher`) up to `PREFETCH_FRAMES` ahead, so the network does not wait for them. Memory stays
bounded on long videos: one clip of resized frames and those read ahead, the accumulator's state (see
`accumulate.py`, `propagation.py`) and nothing at full resolution beyond a frame at a time. Which objects a VOS/PET
clip segments is `propagation.clip_objects`'s business. `RunStats` times each stage.

On CUDA the loop itself never waits for the device: frames go up from pinned memory without blocking. The host
waits where results must leave it, in the accumulators: VIS/VPS query selection (`nonzero`), the IoU matching of
tracks and the painting of VPS segments (on the host), the masks and maps of final frames, and which VOS objects
are still alive (it decides the next clip's inputs); and wherever the network itself branches on data.
"""
from __future__ import annotations

import contextlib
import itertools
import resource
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from tarvis_fast.config import DatasetInferenceConfig
from tarvis_fast.inference.accumulate import (
    PanopticFrame,
    VisAccumulator,
    VisTrack,
    VpsAccumulator,
)
from tarvis_fast.inference.background import Prefetcher
from tarvis_fast.inference.clips import (
    Clip,
    FrameGeometry,
    ImagesResizer,
    clip_schedule,
)
from tarvis_fast.inference.host_memory import release_freed_memory, retain_freed_memory
from tarvis_fast.inference.propagation import (
    ObjectClip,
    VosAccumulator,
    VosFrame,
    check_references,
    clip_objects,
)
from tarvis_fast.inference.sequences import ObjectReference
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction
from tarvis_fast.tasks import Task

Result = VisTrack | PanopticFrame | VosFrame

# Frames read and resized ahead of the clip being run: a clip's worth (the benchmarks' clips are 6 to 12 frames),
# so the next clip's frames are ready when the network finishes; about 15 MiB at 480x854.
PREFETCH_FRAMES = 12
# The kept memory (host_memory) fragments and grows slowly over a long video: peak RSS 1.37 -> 1.56 GiB from 64 to 256
# frames (R50 VOS, min_dim 120; glibc's defaults: 1.49 -> 1.51). Handed back every so many clips, it stays flat
# (1.34 -> 1.30 GiB) for one clip's page faults in as many.
RELEASE_EVERY_CLIPS = 16


# ============================================================================================== settings

@dataclass(frozen=True)
class ClipSettings:
    """How a video is cut into clips and resized for the network."""

    clip_length: int
    frame_overlap: int
    resizer: ImagesResizer

    @classmethod
    def from_config(cls, inference: DatasetInferenceConfig, *, clip_length: int | None = None,
                    frame_overlap: int | None = None, min_dim: int | None = None,
                    disable_resize: bool = False) -> ClipSettings:
        """A dataset's inference settings with the original's CLI overrides (SPEC §4): `min_dim` switches to
        "min_dim" resizing with that shorter side (the config's max_dim stays), `disable_resize` to none."""
        if min_dim is not None and disable_resize:
            raise ValueError("min_dim and disable_resize exclude each other")
        resize = inference.image_resize
        if disable_resize:
            resizer = ImagesResizer("none")
        elif min_dim is not None:
            resizer = ImagesResizer("min_dim", min_dim, resize.max_dim)
        elif resize.mode == "none":
            resizer = ImagesResizer("none")
        elif resize.mode == "min_dim":
            # Inference resizes deterministically: the first of the configured sizes (the original's configs list one).
            resizer = ImagesResizer("min_dim", resize.min_dims[0], resize.max_dim)
        else:
            raise ValueError(f"image_resize.mode {resize.mode!r} is for training; inference takes 'min_dim' or 'none'")
        return cls(clip_length if clip_length is not None else inference.clip_length,
                   frame_overlap if frame_overlap is not None else inference.frame_overlap, resizer)


@dataclass(frozen=True)
class VisRequest:
    """Video instance segmentation with `dataset`'s semantic queries (YouTube-VIS, OVIS; SPEC §6.1)."""

    dataset: str
    tracks_per_video: int = 10
    max_tracks_per_clip: int = 10
    score_threshold: float = 0.0

    @classmethod
    def from_config(cls, dataset: str, inference: DatasetInferenceConfig) -> VisRequest:
        return cls(dataset, inference.max_tracks_per_video, inference.max_tracks_per_clip,
                   inference.track_score_threshold)


@dataclass(frozen=True)
class VpsRequest:
    """Video panoptic segmentation with `dataset`'s semantic queries (KITTI-STEP, Cityscapes-VPS, VIPSeg; §6.2)."""

    dataset: str
    thing_classes: tuple[int, ...]      # 0-based
    max_tracks_per_clip: int = 1000
    score_threshold: float = 0.5
    max_tracks_per_video: int = 1000    # the original's formatters keep at most 1000 tracks

    @classmethod
    def from_config(cls, dataset: str, thing_classes: Sequence[int], inference: DatasetInferenceConfig) -> VpsRequest:
        return cls(dataset, tuple(thing_classes), inference.max_tracks_per_clip, inference.track_score_threshold)


@dataclass(frozen=True)
class VosRequest:
    """VOS / PET: objects given by references (masks and/or points) on some frames (DAVIS, BURST; SPEC §6.3).

    A reference with a mask makes a mask object (its point, if any, is not used); one with only a point a point
    object. An object may have references on several frames: a later one re-anchors it with that frame's mask.

    The defaults reproduce the original, for benchmark numbers; `VideoPredictor` turns both off for users' videos.
    `consistent_final_clip`: see `VosAccumulator` (False reproduces the original's final-clip quirk).
    `reuse_points_on_overlap`: a point on an overlap frame is given to both clips, and in the second its object
    has survived as a mask object. True does as the original: the object gets a point query group there as well
    (two rows with its id, stitched as `VosAccumulator` describes); False uses each point in one clip only.
    """

    references: Sequence[ObjectReference]
    consistent_final_clip: bool = False
    reuse_points_on_overlap: bool = True


Request = VisRequest | VpsRequest | VosRequest


# ============================================================================================== statistics

STAGES = ("decode", "model", "stitch", "write")


@dataclass
class RunStats:
    """What a run has done so far, for the closing summary.

    `stage_seconds`: how long each stage was busy (`STAGES`): "decode" reading, checking and resizing frames (in a
    background thread), "model" the network's forward, "stitch" the accumulators and VOS propagation, "write" the
    writer (in a background thread; added by whoever writes, see `cli.py`). Background stages overlap the others,
    so they may add up to more than `seconds`. On CUDA the forward is asynchronous: "model" is the time the host
    spends launching it, and the wait for its results falls into "stitch", where they leave the device.
    """

    frames: int = 0
    clips: int = 0
    seconds: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] += seconds

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Count the block's time into `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def timed_iter(self, stage: str, items: Iterable[Result]) -> Iterator[Result]:
        """`items`, the time spent producing them counted into `stage` (not the consumer's time in between)."""
        items = iter(items)
        while True:
            with self.timed(stage):
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item

    def summary(self) -> str:
        memory = peak_memory_bytes(self.device)
        where = "GPU memory (allocated)" if self.device.type == "cuda" else "process memory (max RSS)"
        busy = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in self.stage_seconds.items())
        return (f"{self.frames} frames in {self.clips} clips, {self.seconds:.1f} s: {self.frames_per_second:.2f} "
                f"frames/s; busy: {busy}; peak {where} {memory / 2**30:.2f} GiB")


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of the run: allocated on a CUDA device, else this process's maximum resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ============================================================================================== the runner

def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device supports it, else fp16 (older CUDA GPUs)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def compile_model(model: nn.Module, backend: str | Callable = "inductor") -> None:
    """Compile, in place, the network's repeated blocks, each on its own (`tarvis_fast.model.compile`): the
    backbone's blocks, the neck's layers and the decoder's blocks. Blocks of one kind share their graphs. Heights
    and widths are static, so each new padded size (a bucket: the model pads to multiples of 64) compiles the
    blocks once more; the frame and query counts are dynamic, so a clip's length and the number of VOS objects
    do not. The object encoder and the output heads stay eager: they branch on data (mask splitting, point
    sampling); so do, for a CPU, the block types whose compiled code measured no faster than eager there
    (`tarvis_fast.model.compile.CPU_EAGER_TYPES`). With Inductor, compiled code is cached on disk
    (`default_cache_dir`), so a later run of the same sizes skips code generation.

    In-place (`nn.Module.compile`): parameter names, and so checkpoints, are unchanged."""
    from tarvis_fast.model.compile import compile_regions, default_cache_dir

    if backend == "inductor":
        default_cache_dir()
    compile_regions(model, backend)


def _no_duck_sizing() -> contextlib.AbstractContextManager:
    """Tracing without "duck sizing": by default, sizes that happen to be equal when a graph is traced (say T = 12
    frames and 384 / 32 = 12 rows) are assumed equal ever after, and the next video recompiles."""
    import torch.fx.experimental._config as fx_config  # private, but the documented switch for this behaviour

    return fx_config.patch(use_duck_shape=False)


class ClipRunner:
    """Runs a TarViS network over videos clip by clip (see the module docstring).

    Args:
        model: the network, in eval mode (VOS uses eval mode's 8 queries per mask object).
        device: where the network runs; the model is moved there.
        amp: run the network under autocast (bf16 where supported, SPEC §4 `--amp`).
        compile: compile the network's blocks for the whole run (`compile_model`): the first clip of each new padded
            size compiles them (minutes on a CPU, seconds from the on-disk cache); a string or a callable names the
            torch.compile backend (default inductor).
        progress: show a progress bar over each video's clips.

    On the CPU, the process keeps the memory it frees for its next allocations from then on
    (`host_memory.retain_freed_memory`).
    """

    def __init__(self, model: nn.Module, *, device: str | torch.device | None = None, amp: bool = False,
                 compile: bool | str | Callable = False, progress: bool = False) -> None:
        if model.training:
            raise ValueError("ClipRunner: the model must be in eval mode (model.eval()); training mode uses other "
                             "query counts")
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cpu":
            retain_freed_memory()  # else every clip page-faults its feature maps in afresh (host_memory.py)
        self.model = model.to(self.device)
        self.amp, self.progress, self.compiled = amp, progress, bool(compile)
        if compile:
            compile_model(self.model, "inductor" if compile is True else compile)
        self.stats = RunStats(device=self.device)

    def run(self, frames: Iterable[np.ndarray], num_frames: int, size: tuple[int, int], request: Request,
            settings: ClipSettings, *, name: str = "video") -> Iterator[Result]:
        """Results of one video, streamed as they become final.

        frames: the video's frames in order, (H, W, 3) uint8 RGB, exactly `num_frames` of them, each of `size`
        (H, W); read lazily, a clip at a time. `name` labels the progress bar and error messages.
        Yields `VosFrame`s (VosRequest) or `VisTrack`s (VisRequest) or `PanopticFrame`s (VpsRequest).
        """
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"{name}: num_frames must be a positive int, got {num_frames!r}")
        geometry = settings.resizer.geometry(*size)
        if isinstance(request, VosRequest):
            references = list(request.references)  # may be lazy (decoded on iteration): read once
            check_references(references, num_frames, geometry.original, name)
            results = self._run_vos(frames, num_frames, geometry, references, request, settings, name)
        elif isinstance(request, (VisRequest, VpsRequest)):
            results = self._run_classes(frames, num_frames, geometry, request, settings, name)
        else:
            raise TypeError(f"request must be a VisRequest, VpsRequest or VosRequest, got {type(request).__name__}")
        return self._timed(results)

    def _timed(self, results: Iterator[Result]) -> Iterator[Result]:
        """Count the time until the video's last result into `stats` (the consumer's time included); then return
        the memory the video's clips kept (`host_memory`), so that a long-lived process does not hold it."""
        started = time.perf_counter()
        try:
            yield from results
        finally:
            self.stats.seconds += time.perf_counter() - started
            release_freed_memory()

    # -- per task -----------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _run_classes(self, frames: Iterable[np.ndarray], num_frames: int, geometry: FrameGeometry,
                     request: VisRequest | VpsRequest, settings: ClipSettings, name: str) -> Iterator[Result]:
        if isinstance(request, VisRequest):
            model_task = Task.VIS
            accumulator = VisAccumulator(num_frames, geometry, tracks_per_video=request.tracks_per_video,
                                         max_tracks_per_clip=request.max_tracks_per_clip,
                                         score_threshold=request.score_threshold)
        else:
            model_task = Task.VPS
            accumulator = VpsAccumulator(num_frames, geometry, thing_classes=request.thing_classes,
                                         max_tracks_per_clip=request.max_tracks_per_clip,
                                         score_threshold=request.score_threshold,
                                         max_tracks_per_video=request.max_tracks_per_video)
        schedule = clip_schedule(num_frames, settings.clip_length, settings.frame_overlap)
        for clip, images in self._clips(frames, num_frames, schedule, geometry, name):
            prediction = self._forward(images, model_task, dataset=request.dataset)
            yield from self.stats.timed_iter("stitch", accumulator.add_clip(clip, prediction))
        yield from self.stats.timed_iter("stitch", accumulator.finish())

    @torch.inference_mode()
    def _run_vos(self, frames: Iterable[np.ndarray], num_frames: int, geometry: FrameGeometry,
                 references: list[ObjectReference], request: VosRequest, settings: ClipSettings,
                 name: str) -> Iterator[VosFrame]:
        """`references`: `request.references`, read once and checked."""
        schedule = clip_schedule(num_frames, settings.clip_length, settings.frame_overlap,
                                 first_frame=min(r.frame_index for r in references))
        if len(schedule) == 1 and not request.consistent_final_clip:
            warnings.warn(f"{name}: the video fits in one clip, and the original's final-clip stitching (the "
                          "default) leaves such a video without masks; pass consistent_final_clip=True "
                          "(--final_clip consistent) to segment it", stacklevel=2)
        accumulator = VosAccumulator(num_frames, geometry, consistent_final_clip=request.consistent_final_clip)
        for clip, images in self._clips(frames, num_frames, schedule, geometry, name):
            # Frame by frame, as the original's loader lists a clip's references: the order of new objects, which
            # the final-clip quirk's labels and the order of shared-id rows depend on.
            in_clip = sorted((r for r in references if r.frame_index in clip.frames), key=lambda r: r.frame_index)
            with self.stats.timed("stitch"):
                propagation = accumulator.propagate(clip, [r.object_id for r in in_clip])
                objects = clip_objects(clip, propagation, in_clip, geometry, self.device,
                                       reuse_points_on_overlap=request.reuse_points_on_overlap)
            if objects is None:
                yield from self.stats.timed_iter("stitch", accumulator.skip_clip(clip))
                continue
            prediction = self._forward(images, Task.VOS, objects=objects.references)
            yield from self.stats.timed_iter("stitch", accumulator.add_clip(
                clip, ObjectClip(prediction, objects.object_ids, objects.reference_frames)))
        yield from self.stats.timed_iter("stitch", accumulator.finish())

    # -- shared ------------------------------------------------------------------------------------------------

    def _forward(self, images: Tensor, task: Task, **kwargs: Any) -> InstancePrediction | ObjectPrediction:
        """The final decoder layer's prediction for one clip (1, T, 3, h, w)."""
        with torch.autocast(self.device.type, dtype=autocast_dtype(self.device), enabled=self.amp), \
                (_no_duck_sizing() if self.compiled else contextlib.nullcontext()), self.stats.timed("model"):
            return self.model(images, task, all_layers=False, **kwargs).final

    def _clips(self, frames: Iterable[np.ndarray], num_frames: int, schedule: list[Clip], geometry: FrameGeometry,
               name: str) -> Iterator[tuple[Clip, Tensor]]:
        """(clip, images (1, T, 3, h, w) float32 RGB 0..255 on the device) for each clip. The frames are read,
        checked and resized in a background thread, up to `PREFETCH_FRAMES` ahead of the clip being run; their
        errors are raised here, where the frame is due."""
        held: deque[tuple[int, Tensor]] = deque()  # (video frame, resized (3, h, w) uint8) of the current clip
        next_frame = schedule[0].start
        bar = tqdm(schedule, desc=name, unit="clip", leave=False, disable=not self.progress)
        prepared = Prefetcher(self._prepared_frames(frames, num_frames, schedule[0].start, geometry, name),
                              PREFETCH_FRAMES, name=f"{name}: frames")
        try:
            for clip in bar:
                while held and held[0][0] < clip.start:
                    held.popleft()
                for index, resized in itertools.islice(prepared, clip.stop - next_frame):
                    # Pinned frames (CUDA) are copied without waiting for the device to finish the previous clip.
                    held.append((index, resized.to(self.device, non_blocking=True)))
                    next_frame = index + 1
                images = torch.stack([image for _, image in held]).float()[None]
                yield clip, images
                self.stats.clips += 1
                if self.stats.clips % RELEASE_EVERY_CLIPS == 0:
                    release_freed_memory()
            next(prepared, None)  # the end of the frames, or the error of a video longer than said
        finally:
            prepared.close()
            bar.close()
            self.stats.frames += next_frame
            self.stats.add("decode", prepared.busy_seconds)

    def _prepared_frames(self, frames: Iterable[np.ndarray], num_frames: int, first: int, geometry: FrameGeometry,
                         name: str) -> Iterator[tuple[int, Tensor]]:
        """(video frame, resized (3, h, w) uint8 on the CPU, pinned for a CUDA device) for frames `first` ..
        `num_frames - 1`, the earlier ones read and dropped; raises if `frames` holds more or fewer than
        `num_frames` (the error of a longer video after the last frame)."""
        stream = iter(frames)
        for index in range(num_frames):
            frame = next(stream, None)
            if frame is None:
                raise ValueError(f"{name}: the video ended after {index} frames, expected {num_frames}")
            _check_frame(frame, index, geometry.original, name)
            if index >= first:  # frames before the first clip are not run
                resized = torch.from_numpy(geometry.resize_frames(frame[None])[0]).permute(2, 0, 1)
                yield index, resized.pin_memory() if self.device.type == "cuda" else resized
        if next(stream, None) is not None:
            raise ValueError(f"{name}: the video has more than the {num_frames} frames it was said to have")


def _check_frame(frame: np.ndarray, index: int, size: tuple[int, int], name: str) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (*size, 3):
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"{name}: frame {index} must be a uint8 (H, W, 3) = ({size[0]}, {size[1]}, 3) RGB array, "
                         f"got {got}")


