"""The seven benchmarks' inference inputs: each benchmark's sequences, frames and VOS/PET references (SPEC §6, §7).

    benchmark = open_benchmark("DAVIS", cfg)                  # inputs under $TARVIS_WORKSPACE_DIR, or `paths=`
    for seq in select_sequences(benchmark.sequences(), names=seq_names, seq_split="2/4"):
        ...                                                   # run it, write it with `writers.open_writer`

Which benchmarks exist, their task, splits and default paths are rows of `tarvis_fast.datasets.DATASETS`; this
module holds one reader per layout (`READERS`). The types it returns are in `sequences.py`.

Inputs, relative to `$TARVIS_WORKSPACE_DIR` (the original's layout; `dataset_images/inference/` is IMG and
`dataset_annotations/inference/` is ANN below). Each can be overridden through `paths={key: path}`; the CLI offers
each key as a flag `--<key>` (see `PATH_KEYS`), and error messages name that flag.

    benchmark       images (key "images")               annotations (key "annotations")
    YOUTUBE_VIS     IMG/youtube_vis_2021/<video>/       ANN/youtube_vis/valid_2021.json
    OVIS            IMG/ovis/<video>/                   ANN/ovis/valid.json
    DAVIS           IMG/davis/<seq>/*.jpg               ANN/davis/Annotations/<seq>/*.png
                    and "image_set": ANN/davis/ImageSet_<split>.txt (split val or testdev)
    BURST           IMG/burst/<split>/<dataset>/<seq>/  ANN/burst/first_frame_annotations_<split>.json
    KITTI_STEP      IMG/kitti_step_val/<seq>/*.png      (none: the 9 validation sequences are fixed)
    CITYSCAPES_VPS  IMG/cityscapes_vps_val/             ANN/cityscapes_vps/im_all_info_val_city_vps.json
    VIPSEG          IMG/vipseg/<video>/*.jpg            ANN/vipseg/<split>.json (test images: IMG/vipseg_test)

`ground_truth` (any benchmark) is never looked for in the workspace: give it to make `Benchmark.ground_truth` the
folder or file that `tarvis_fast.evaluation` takes as `--gt` (EVAL.md), e.g. a DAVIS-2017 root for DAVIS.

What each reader does beyond listing frames:
- DAVIS: the objects of the first annotation PNG are the references (as the original). When the annotation folder
  holds fewer PNGs than the sequence has frames (test-dev style: only reference frames given), an object first
  seen in a later PNG gets its reference there; a folder with a PNG for every frame is ground truth, and only its
  first PNG is read. Id 255 (void) is never an object.
- BURST: frame t is run if `t % fps` is in `round(linspace(0, fps, n + 2)[:-1])`, n = min(10, fps - 2) (SPEC §6.3),
  or if it is annotated (the original asserts that sampling keeps every annotated frame); each track's reference
  is its first annotated frame: a point (mode "point", PET) or the RLE mask (mode "mask").
- KITTI_STEP: the image folders are listed and must hold exactly the frames `000000.png ...` the original lists in
  its packaged `kitti_step_filenames.json` (which names every frame of each sequence, so it carries nothing else).
- CITYSCAPES_VPS: images grouped into videos by `id // 10000` (frame `id % 10000`, 1-based); with
  `sparse_frames` only frames with `frame % 5 == 0` are run. The six annotated frames (5, 10, ..., 30) are written
  under the ground truth's image ids, `<video:04d>_<6 (video - 1) + frame / 5:04d>_<city>_<seq>_<frame>` (the rule
  behind the original's packaged `cityscapes_vps_val_filename_mapping.json`; it reproduces all 300 entries).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tarvis_fast.config import Config
from tarvis_fast.datasets import BENCHMARKS, WORKSPACE_ENV, dataset_info, vocabulary
from tarvis_fast.formats.burst import BurstSequence, read_burst_annotations
from tarvis_fast.formats.davis import VOID_ID, read_label_png
from tarvis_fast.formats.image import image_size
from tarvis_fast.formats.kitti_step import VAL_SEQUENCES as KITTI_STEP_VAL_SEQUENCES
from tarvis_fast.formats.panoptic import read_image_list, read_vipseg_video_list
from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.formats.ytvis import read_video_frames
from tarvis_fast.inference.sequences import (
    Benchmark,
    BenchmarkDataError,
    LazyReferences,
    ObjectReference,
    SequenceInfo,
)
from tarvis_fast.tasks import Task

__all__ = ["PATH_KEYS", "READERS", "burst_frame_indices", "cityscapes_vps_image_id", "open_benchmark"]

PATH_KEYS: dict[str, str] = {  # key of `paths=` (and CLI flag --<key>) -> what it names
    "images": "folder of the benchmark's frames",
    "annotations": "the benchmark's inference annotation file (DAVIS: the Annotations folder)",
    "image_set": "DAVIS: the file listing the split's sequences",
    "ground_truth": "ground truth in the official evaluator's layout, for --eval",
}

BURST_EXTRA_FRAMES_PER_SECOND = 10  # the original's `num_interleaved_frames`
CITYSCAPES_VPS_FRAME_STEP = 5       # every 5th frame of a Cityscapes-VPS video is annotated
CITYSCAPES_VPS_VIDEO_LENGTH = 30
# Frames per KITTI-STEP validation sequence: the lengths of the lists in the original's kitti_step_filenames.json.
KITTI_STEP_VAL_FRAMES = {"0002": 233, "0006": 270, "0007": 800, "0008": 390, "0010": 294, "0013": 340, "0014": 106,
                         "0016": 209, "0018": 339}


# ============================================================================================== input helpers

def _flag(key: str) -> str:
    return f"--{key}"


def _hint(key: str) -> str:
    return f"point {_flag(key)} elsewhere"


def _unique_names(sequences: list[SequenceInfo], source: Path) -> list[SequenceInfo]:
    seen: set[str] = set()
    for seq in sequences:
        if seq.name in seen:
            raise BenchmarkDataError(f"{source}: sequence {seq.name!r} is listed twice")
        seen.add(seq.name)
    return sequences


# ============================================================================================== readers

_Settings = Mapping[str, Any]   # what a reader needs from the config: {"mode", "sparse_frames"}


def _read_vis(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    """YouTube-VIS / OVIS: `videos[].{id, height, width, file_names: ["<video>/<frame>.jpg", ...]}`."""
    source = paths["annotations"]
    sequences = [
        SequenceInfo(name=video.folder, frames=[paths["images"] / f for f in video.file_names],
                     frame_names=[Path(f).stem for f in video.file_names], height=video.height, width=video.width,
                     meta={"video_id": video.id})
        for video in read_video_frames(source, BenchmarkDataError, _hint("annotations"))
    ]
    return _unique_names(sequences, source)


def _davis_objects(path: Path, shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """Object id -> (H, W) bool mask of one annotation PNG; void (255) is no object."""
    labels = read_label_png(path, shape=shape)
    ids = np.unique(labels)
    return {int(i): labels == i for i in ids if i not in (0, VOID_ID)}


def _davis_references(pngs: list[Path], frame_of: Mapping[str, int], shape: tuple[int, int]
                      ) -> list[ObjectReference]:
    """The first PNG's objects; with a sparse folder also objects first seen in later PNGs (module docstring)."""
    references: dict[int, ObjectReference] = {}
    sparse = len(pngs) < len(frame_of)
    for png in pngs if sparse else pngs[:1]:
        for object_id, mask in _davis_objects(png, shape).items():
            if object_id not in references:
                references[object_id] = ObjectReference(object_id, frame_of[png.stem], mask, None)
    if not references:
        raise BenchmarkDataError(f"{pngs[0].parent}: no object (ids 1-254) in "
                                 f"{'any of its annotations' if sparse else pngs[0].name}")
    return list(references.values())


def _read_davis(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    image_set = paths["image_set"]
    if not image_set.is_file():
        raise FileNotFoundError(f"{image_set}: DAVIS sequence list not found (set it with {_flag('image_set')})")
    names = [line.strip() for line in image_set.read_text().splitlines() if line.strip()]
    if not names:
        raise BenchmarkDataError(f"{image_set}: lists no sequences")
    sequences = []
    for name in names:
        image_dir, annotation_dir = paths["images"] / name, paths["annotations"] / name
        frames = sorted(image_dir.glob("*.jpg"))
        if not frames:
            raise FileNotFoundError(f"{image_dir}: no frames (*.jpg) for sequence {name} "
                                    f"(listed in {image_set}; images: {_flag('images')})")
        pngs = sorted(annotation_dir.glob("*.png"))
        if not pngs:
            raise FileNotFoundError(f"{annotation_dir}: no annotation PNG for sequence {name} "
                                    f"(annotations: {_flag('annotations')})")
        frame_of = {frame.stem: t for t, frame in enumerate(frames)}
        strays = [png.name for png in pngs if png.stem not in frame_of]
        if strays:
            raise BenchmarkDataError(f"{annotation_dir}: annotations {strays[:3]} have no frame in {image_dir}")
        height, width = image_size(pngs[0], BenchmarkDataError)
        sequences.append(SequenceInfo(
            name=name, frames=frames, frame_names=[f.stem for f in frames], height=height, width=width,
            references=_davis_references(pngs, frame_of, (height, width)),
        ))
    return _unique_names(sequences, image_set)


def burst_frame_indices(num_frames: int, fps: int, annotated: Iterable[int],
                        extra_per_second: int = BURST_EXTRA_FRAMES_PER_SECOND) -> list[int]:
    """The frames of a BURST video that are run (SPEC §6.3): t with `t % fps` in
    `round(linspace(0, fps, n + 2)[:-1])`, n = min(extra_per_second, fps - 2), and every annotated frame.

    Rounding is numpy's (half to even), as in the original. For fps < 2 n is clamped to 0 (the original's
    negative n would sample nothing), which keeps frames with `t % fps == 0`.
    """
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    n = max(0, min(extra_per_second, fps - 2))
    phases = set(np.round(np.linspace(0, fps, n + 2)[:-1]).astype(int).tolist())
    return sorted({t for t in range(num_frames) if t % fps in phases} | set(annotated))


def _burst_sequence(seq: BurstSequence, images: Path, source: Path, mode: str) -> SequenceInfo:
    where = f"{source} (sequence {seq.name})"
    position = {path: t for t, path in enumerate(seq.all_image_paths)}
    unknown = [p for p in seq.annotated_image_paths if p not in position]
    if unknown:
        raise BenchmarkDataError(f"{where}: annotated frames {unknown[:3]} are not in all_image_paths")
    if seq.fps < 1:
        raise BenchmarkDataError(f"{where}: fps must be a positive integer, got {seq.fps}")
    kept = burst_frame_indices(len(seq.all_image_paths), seq.fps, (position[p] for p in seq.annotated_image_paths))
    image_paths = [seq.all_image_paths[t] for t in kept]
    index_of = {path: i for i, path in enumerate(image_paths)}
    exemplars = seq.exemplars()
    if mode == "point":
        missing = [e.track_id for e in exemplars if e.point_xy is None]
        if missing:
            raise BenchmarkDataError(f"{where}: tracks {missing[:5]} have no point at their first annotation "
                                     "(point mode needs a first-frame annotation file)")
        references: Sequence[ObjectReference] = [
            ObjectReference(e.track_id, index_of[e.image_path], None, (e.point_xy[1], e.point_xy[0]))
            for e in exemplars]
    else:
        def load() -> list[ObjectReference]:
            return [ObjectReference(e.track_id, index_of[e.image_path], decode_rle(e.mask), None) for e in exemplars]
        references = LazyReferences(len(exemplars), load)
    return SequenceInfo(
        name=seq.name,
        frames=[images / seq.dataset / seq.seq_name / p for p in image_paths],
        frame_names=[Path(p).stem for p in image_paths],
        height=seq.height, width=seq.width, references=references,
        meta={"annotated": {index_of[p]: p for p in seq.annotated_image_paths}},
    )


def _read_burst(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    source = paths["annotations"]
    if not source.is_file():
        raise FileNotFoundError(f"{source}: BURST first-frame annotations not found (set it with "
                                f"{_flag('annotations')})")
    _, sequences = read_burst_annotations(source)
    if not sequences:
        raise BenchmarkDataError(f"{source}: lists no sequences")
    return _unique_names([_burst_sequence(s, paths["images"], source, settings["mode"]) for s in sequences], source)


def _read_kitti_step(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    sequences = []
    for name in KITTI_STEP_VAL_SEQUENCES:
        folder = paths["images"] / name
        frames = sorted(folder.glob("*.png"))
        expected = [f"{t:06d}.png" for t in range(KITTI_STEP_VAL_FRAMES[name])]
        if [f.name for f in frames] != expected:
            raise BenchmarkDataError(f"{folder}: KITTI-STEP sequence {name} must hold exactly the frames "
                                     f"{expected[0]} ... {expected[-1]} ({len(expected)}), found {len(frames)} PNGs "
                                     f"(images: {_flag('images')})")
        height, width = image_size(frames[0], BenchmarkDataError)
        sequences.append(SequenceInfo(name=name, frames=frames, frame_names=[f.stem for f in frames],
                                      height=height, width=width))
    return sequences


def cityscapes_vps_image_id(video: int, frame: int, file_name: str) -> str:
    """The ground-truth image id of annotated frame `frame` (1-based, a multiple of 5) of video `video`, e.g.
    (5, 5, "frankfurt_000000_001736_leftImg8bit.png") -> "0005_0025_frankfurt_000000_001736"."""
    if frame % CITYSCAPES_VPS_FRAME_STEP:
        raise ValueError(f"frame {frame} of video {video} is not an annotated frame")
    per_video = CITYSCAPES_VPS_VIDEO_LENGTH // CITYSCAPES_VPS_FRAME_STEP
    stem = Path(file_name).stem.removesuffix("_leftImg8bit")
    return f"{video:04d}_{per_video * (video - 1) + frame // CITYSCAPES_VPS_FRAME_STEP:04d}_{stem}"


def _read_cityscapes_vps(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    source = paths["annotations"]
    videos: dict[int, dict[int, tuple[str, tuple[int, int]]]] = {}
    for i, image in enumerate(read_image_list(source, BenchmarkDataError, _hint("annotations"))):
        if not isinstance(image.id, int) or image.id < 10000:
            raise BenchmarkDataError(f"{source}: images[{i}]: id must be an integer video * 10000 + frame, got "
                                     f"{image.id!r}")
        video, frame = divmod(image.id, 10000)
        if settings["sparse_frames"] and frame % CITYSCAPES_VPS_FRAME_STEP:
            continue
        if frame in videos.setdefault(video, {}):
            raise BenchmarkDataError(f"{source}: images[{i}]: frame {frame} of video {video} is listed twice")
        videos[video][frame] = (image.file_name, (image.height, image.width))
    eval_frames = range(CITYSCAPES_VPS_FRAME_STEP, CITYSCAPES_VPS_VIDEO_LENGTH + 1, CITYSCAPES_VPS_FRAME_STEP)
    sequences = []
    for video, frames in sorted(videos.items()):
        missing = [f for f in eval_frames if f not in frames]
        if missing:
            raise BenchmarkDataError(f"{source}: video {video} lacks annotated frames {missing} (ids "
                                     f"{video * 10000 + missing[0]}, ...)")
        order = sorted(frames)
        sizes = {frames[f][1] for f in order}
        if len(sizes) > 1:
            raise BenchmarkDataError(f"{source}: video {video} mixes frame sizes {sorted(sizes)}")
        (height, width), = sizes
        file_names = [frames[f][0] for f in order]
        sequences.append(SequenceInfo(
            name=f"{video:04d}",
            frames=[paths["images"] / f for f in file_names],
            frame_names=[Path(f).stem for f in file_names],
            height=height, width=width,
            meta={"image_ids": [cityscapes_vps_image_id(video, f, frames[f][0]) if f in eval_frames else None
                                for f in order]},
        ))
    return sequences


def _read_vipseg(paths: Mapping[str, Path], settings: _Settings) -> list[SequenceInfo]:
    """VIPSeg: `videos[].{video_id, images[].{file_name (.png), height, width}}`; frames are <video>/<stem>.jpg."""
    source = paths["annotations"]
    sequences = []
    for video_id, images in read_vipseg_video_list(source, BenchmarkDataError, _hint("annotations")):
        file_names = [image.file_name for image in images]
        sequences.append(SequenceInfo(
            name=video_id,
            frames=[paths["images"] / video_id / f"{Path(f).stem}.jpg" for f in file_names],
            frame_names=[Path(f).stem for f in file_names],
            height=images[0].height, width=images[0].width,
            meta={"file_names": file_names},
        ))
    return _unique_names(sequences, source)


# ============================================================================================== the table

READERS: dict[str, Callable[[Mapping[str, Path], _Settings], list[SequenceInfo]]] = {  # by `BenchmarkInfo.layout`
    "ytvis": _read_vis,
    "davis": _read_davis,
    "burst": _read_burst,
    "kitti_step": _read_kitti_step,
    "cityscapes_vps": _read_cityscapes_vps,
    "vipseg": _read_vipseg,
}


def _resolve_paths(name: str, defaults: Mapping[str, str], workspace: Path | None,
                   overrides: Mapping[str, str | os.PathLike | None]) -> dict[str, Path]:
    """Every input of the benchmark: the override if given, else under the workspace; each must exist."""
    given = {key: Path(value) for key, value in overrides.items() if value is not None}
    allowed = set(defaults) | {"ground_truth"}
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"{name} takes no path {sorted(unknown)}; its paths are {sorted(allowed)}")
    if workspace is None and os.environ.get(WORKSPACE_ENV):
        workspace = Path(os.environ[WORKSPACE_ENV])
    resolved = {}
    for key, relative in defaults.items():
        if key in given:
            path = given[key]
        elif workspace is None:
            raise FileNotFoundError(f"{name}: no {PATH_KEYS[key]} given: set ${WORKSPACE_ENV} (the workspace holds "
                                    f"{relative}) or pass {_flag(key)}")
        else:
            path = workspace / relative
        if not path.exists():
            raise FileNotFoundError(f"{path}: {name} {PATH_KEYS[key]} not found (set it with {_flag(key)})")
        resolved[key] = path
    if "ground_truth" in given:
        if not given["ground_truth"].exists():
            raise FileNotFoundError(f"{given['ground_truth']}: ground truth not found ({_flag('ground_truth')})")
        resolved["ground_truth"] = given["ground_truth"]
    return resolved


def open_benchmark(name: str, cfg: Config, *, workspace: str | os.PathLike | None = None,
                   paths: Mapping[str, str | os.PathLike | None] | None = None, split: str | None = None) -> Benchmark:
    """Read one benchmark's sequence list (frames, sizes, VOS/PET references).

    name: one of `datasets.BENCHMARKS` (any case). cfg: its `datasets[name].inference` gives the default split, the
    BURST mode and Cityscapes-VPS' sparse_frames. workspace: defaults to $TARVIS_WORKSPACE_DIR. paths: overrides by
    key of PATH_KEYS (None values are ignored, so CLI flags can be passed through). split: overrides the config's.
    """
    key = name.upper()
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    if key not in cfg.datasets:
        raise ValueError(f"the config has no dataset {key} (datasets: {sorted(cfg.datasets)})")
    row, settings = dataset_info(key), cfg.datasets[key].inference
    info = row.benchmark
    split = split or settings.split
    if split not in info.splits:
        raise ValueError(f"{key} has no split {split!r}; choose from {', '.join(info.splits)}")
    resolved = _resolve_paths(key, info.inputs(split), Path(workspace) if workspace is not None else None,
                              paths or {})
    sequences = READERS[info.layout](resolved, {"mode": settings.mode, "sparse_frames": settings.sparse_frames})
    task = Task.PET if row.task is Task.VOS and info.layout == "burst" and settings.mode == "point" else row.task
    thing_classes = vocabulary(key).thing_classes if row.task is Task.VPS else ()
    return Benchmark(name=key, task=task, split=split, layout=info.layout, metric=info.metric,
                     thing_classes=thing_classes, paths=resolved, ground_truth=resolved.get("ground_truth"),
                     _sequences=tuple(sequences))
