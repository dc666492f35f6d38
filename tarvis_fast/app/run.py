"""One run of the app: the predictor's results written as `infer.py --video` writes them, plus what the page shows
(a video the browser plays, a table per object or class, a zip of the masks); no Gradio here.
"""
from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tarvis_fast.app.inputs import VideoSource
from tarvis_fast.datasets import vocabulary as get_vocabulary
from tarvis_fast.inference.predictor import VideoPredictor
from tarvis_fast.inference.video import OVERLAY_VIDEO, FrameResult, write_video_outputs

DEFAULT_FPS = 10.0                  # a folder of frames has no frame rate of its own (as infer.py)
RESULTS_DIR, BROWSER_VIDEO_SUFFIX = "results", ".webm"  # VP8 WebM: what browsers play
TABLE_HEADERS = ["id", "kind", "class", "frames present", "first frame", "last frame", "mean area (px)",
                 "mean area (%)", "score"]
FrameCallback = Callable[[int, int], None]  # (frames done, frames in all)


@dataclass(frozen=True)
class RunOutputs:
    video: Path                     # the overlay as VP8 WebM, which browsers play
    table: list[list[Any]]          # rows under TABLE_HEADERS
    archive: Path                   # zip of masks/, masks.json and overlay.webm
    num_frames: int


@dataclass
class _Row:
    kind: str
    name: str
    frames: list[int] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


class ResultTable:
    """Per object (VOS, PET), per (track, class) pair (VIS), per thing track and stuff class (VPS): the frames it
    is present in, its mean area where present, its mean score where the task scores."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self._class_names = class_names
        self._rows: dict[tuple[str, int], _Row] = {}
        self._frame_pixels = 0

    def add(self, index: int, result: FrameResult) -> None:
        self._frame_pixels = result.masks.shape[1] * result.masks.shape[2]
        for object_id, mask, class_name, score in zip(result.object_ids, result.masks, result.class_names,
                                                      result.scores):
            kind = "object" if class_name is None else "thing" if result.semantic is not None else "instance"
            self._observe(("id", object_id), kind, class_name or "", index, int(mask.sum()), score)
        if result.semantic is not None:
            stuff = result.semantic[result.id_map() == 0]
            classes, counts = np.unique(stuff, return_counts=True)
            for class_id, count in zip(classes.tolist(), counts.tolist()):
                self._observe(("stuff", class_id), "stuff", self._class_names[class_id], index, count, None)

    def _observe(self, key: tuple[str, int], kind: str, name: str, index: int, area: int,
                 score: float | None) -> None:
        if area == 0:
            return  # a mask the predictor returns empty: the object is not in this frame
        row = self._rows.setdefault(key, _Row(kind, name))
        row.frames.append(index)
        row.areas.append(area)
        if score is not None:
            row.scores.append(score)

    def rows(self) -> list[list[Any]]:
        out = []
        for (key_kind, key), row in sorted(self._rows.items()):
            mean_area = float(np.mean(row.areas))
            out.append([key if key_kind == "id" else None, row.kind, row.name, len(row.frames), row.frames[0],
                        row.frames[-1], round(mean_area, 1), round(100 * mean_area / self._frame_pixels, 2),
                        round(float(np.mean(row.scores)), 4) if row.scores else None])
        return out


def segment_video(predictor: VideoPredictor, source: VideoSource, task: str, output_dir: Path, *,
                  vocabulary: str | None = None, masks: Mapping[int, np.ndarray] | None = None,
                  points: Mapping[int, tuple[int, tuple[float, float]]] | None = None,
                  options: Mapping[str, Any] | None = None, on_frame: FrameCallback | None = None) -> RunOutputs:
    """Run `task` on `source` into `output_dir` (which must not exist yet); `options` go to `segment` as they are
    (clip_length, min_dim, ...). Raises the predictor's ValueErrors (a vocabulary the model lacks, ...)."""
    results = predictor.segment(source.path, task, masks=masks, points=points, vocabulary=vocabulary,
                                **dict(options or {}))
    class_names = get_vocabulary(vocabulary).names if vocabulary else ()
    table = ResultTable(class_names)

    def observed() -> Iterator[tuple[int, FrameResult]]:
        for done, (index, result) in enumerate(results, 1):
            table.add(index, result)
            if on_frame is not None:
                on_frame(done, source.num_frames)
            yield index, result

    results_dir = output_dir / RESULTS_DIR
    fps = source.fps or DEFAULT_FPS
    write_video_outputs(results_dir, observed(), source.frame_names, fps, source=source.name, task=task,
                        vocabulary=vocabulary, class_names=class_names, overlay_suffix=BROWSER_VIDEO_SUFFIX)
    archive = Path(shutil.make_archive(str(output_dir / f"tarvis-{task}-masks"), "zip", root_dir=results_dir))
    video = (results_dir / OVERLAY_VIDEO).with_suffix(BROWSER_VIDEO_SUFFIX)
    return RunOutputs(video, table.rows(), archive, source.num_frames)


def new_run_dir(runs_dir: Path, keep_s: float) -> Path:
    """A fresh folder for one run under `runs_dir`; runs older than `keep_s` seconds are deleted first, so that a
    long-lived server does not fill its temporary folder (the page has long shown their files by then)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in runs_dir.iterdir():
        if now - old.stat().st_mtime > keep_s:
            shutil.rmtree(old, ignore_errors=True)
    folder = runs_dir / uuid.uuid4().hex
    folder.mkdir()
    return folder
