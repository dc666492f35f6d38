"""Result writers of the seven benchmarks: each sequence's accumulator results in, the official files out.

    writer = open_writer(benchmark, output_dir)              # the writer of the benchmark's layout (WRITERS)
    for seq in sequences:
        if resume and writer.is_done(seq):
            continue
        writer.write_sequence(seq, results)                   # the accumulator's stream for this one sequence
    writer.close()                                            # the official files, once every sequence is done

A writer works sequence by sequence, so that runs can be resumed and sharded across processes:
- `write_sequence(seq, results)` writes the sequence's own files as its results stream in (PNGs frame by frame),
  then its *part*, `<output_dir>/parts/<sequence>.json` (what the merged files need from it), atomically. A
  sequence is done when its part exists (`is_done`, for `--resume`); writing it again removes the part first.
- `close()` builds the official files from all parts once every sequence of the benchmark has one, whichever
  process gets there last; until then it logs the missing sequences and writes nothing. Parts stay, so a later
  `--resume` run can close again.

Official files under `output_dir` (EVAL.md):

    YOUTUBE_VIS, OVIS   results.json, and results.zip holding it (what the evaluation servers take)
    DAVIS               <seq>/<frame>.png palette PNGs, pixel = object id; test-dev also results.zip of them
    BURST               results.json: the first-frame annotation file with predicted segmentations
    KITTI_STEP          <seq>/<frame>.png, R = semantic class, G·256 + B = track
    CITYSCAPES_VPS      pan_pred/<image id>.png and pred.json, in the ground truth's image order
    VIPSEG              pan_pred/<video>/<frame>.png and pred.json

`write_sequence` wants every frame's result, in order (VOS/PET: `VosFrame`, VPS: `PanopticFrame`), or every
`VisTrack` of the video. Every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from tarvis_fast.datasets import vocabulary
from tarvis_fast.formats import burst, davis, kitti_step, panoptic, ytvis
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.rle import encode_rle
from tarvis_fast.inference.accumulate import PanopticFrame, VisTrack
from tarvis_fast.inference.background import WRITE_AHEAD, consume_in_background
from tarvis_fast.inference.propagation import VosFrame
from tarvis_fast.inference.sequences import Benchmark, SequenceInfo

logger = logging.getLogger(__name__)

PARTS_DIR = "parts"
RESULTS_JSON = "results.json"
RESULTS_ZIP = "results.zip"


# ============================================================================================== shared pieces

def _frames_in_order(seq: SequenceInfo, results: Iterable[Any], kind: type) -> Iterator[Any]:
    """The per-frame results of `seq`, checked: of type `kind`, one per frame, in order, at the video's size."""
    count = 0
    for result in results:
        if not isinstance(result, kind):
            raise TypeError(f"sequence {seq.name}: expected {kind.__name__} results, got {type(result).__name__}")
        if result.frame_index != count:
            raise ValueError(f"sequence {seq.name}: got the result of frame {result.frame_index} where frame {count} "
                             "was due: results must cover every frame, in order")
        size = result.size if isinstance(result, VosFrame) else result.semantic.shape
        if tuple(size) != (seq.height, seq.width):
            raise ValueError(f"sequence {seq.name}, frame {count}: result is {tuple(size)}, the video "
                             f"{(seq.height, seq.width)} (H, W)")
        yield result
        count += 1
    if count != len(seq.frames):
        raise ValueError(f"sequence {seq.name}: results stop after {count} of {len(seq.frames)} frames")


def _sequence_folders(writer: ResultWriter) -> list[Path]:
    """DAVIS, KITTI-STEP: a folder of PNGs per sequence."""
    return [writer.output_dir / seq.name for seq in writer.benchmark.sequences()]


def _panoptic_paths(writer: ResultWriter) -> list[Path]:
    """Cityscapes-VPS, VIPSeg: the PNG folder and pred.json."""
    return [writer.output_dir / panoptic.PRED_PNG_DIR, writer.output_dir / panoptic.PRED_JSON]


def _dump_json(path: Path, content: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(content, handle)


class ResultWriter(ABC):
    """Writes one benchmark's results into `output_dir` (see the module docstring)."""

    def __init__(self, benchmark: Benchmark, output_dir: Path):
        self.benchmark = benchmark
        self.output_dir = Path(output_dir)
        (self.output_dir / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        self._names = {seq.name for seq in benchmark.sequences()}

    @property
    @abstractmethod
    def prediction_path(self) -> Path:
        """What the metric reads as `--pred`."""

    @abstractmethod
    def _write(self, seq: SequenceInfo, results: Iterator[Any]) -> Any:
        """Write the sequence's own files from its results; return its part (JSON-serialisable)."""

    @abstractmethod
    def _finalise(self) -> list[Path]:
        """Build the official files from the parts of every sequence; return their paths."""

    @abstractmethod
    def _result_paths(self) -> list[Path]:
        """Every file or folder this writer may write, but the parts: per-sequence files and official files."""

    def written_paths(self) -> list[Path]:
        """What this writer (or an earlier run of it) has written into `output_dir` and is still there."""
        parts = [self.output_dir / PARTS_DIR] if any((self.output_dir / PARTS_DIR).iterdir()) else []
        return parts + [path for path in self._result_paths() if path.exists()]

    def clear(self) -> None:
        """Delete `written_paths` (the user's other files in `output_dir` stay), leaving an empty parts folder."""
        for path in self.written_paths():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        (self.output_dir / PARTS_DIR).mkdir(parents=True, exist_ok=True)

    def part_path(self, seq: SequenceInfo) -> Path:
        return self.output_dir / PARTS_DIR / f"{quote(seq.name, safe='')}.json"

    def is_done(self, seq: SequenceInfo) -> bool:
        return self.part_path(seq).is_file()

    def missing(self) -> list[str]:
        """Names of the benchmark's sequences that have no results yet."""
        return [seq.name for seq in self.benchmark.sequences() if not self.is_done(seq)]

    def write_sequence(self, seq: SequenceInfo, results: Iterable[VisTrack | PanopticFrame | VosFrame]) -> float:
        """Consume the accumulator's results for `seq` and write its files, its part last.

        `results` is iterated here (it runs the model) while a background thread writes, in order, up to
        `WRITE_AHEAD` results behind; an error of either is raised here. Returns the seconds the writer was busy."""
        if seq.name not in self._names:
            raise ValueError(f"sequence {seq.name!r} is not part of {self.benchmark.name} ({self.benchmark.split})")
        # Not done while its files are being replaced: a run that dies here leaves the sequence to do again.
        self.part_path(seq).unlink(missing_ok=True)
        part, busy_seconds = consume_in_background(results, lambda items: self._write(seq, items),
                                                   depth=WRITE_AHEAD, name=f"{seq.name}: writer")
        _dump_json(self.part_path(seq), part)
        return busy_seconds

    def close(self) -> list[Path]:
        """The official files, once every sequence is done; else [] (the missing ones are logged)."""
        missing = self.missing()
        if missing:
            logger.warning("%s: %d of %d sequences have no results yet (%s%s); the official files are written when "
                           "all have", self.benchmark.name, len(missing), len(self._names), ", ".join(missing[:5]),
                           ", ..." if len(missing) > 5 else "")
            return []
        return self._finalise()

    def _parts(self) -> Iterator[tuple[SequenceInfo, Any]]:
        """(sequence, part) in benchmark order."""
        for seq in self.benchmark.sequences():
            path = self.part_path(seq)
            try:
                yield seq, json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: damaged part of sequence {seq.name} ({err}); delete it and run the "
                                 "sequence again") from None


# ============================================================================================== VIS

class VisWriter(ResultWriter):
    """YouTube-VIS / OVIS: results.json, one entry per (track, class) pair, and the upload zip."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir / RESULTS_JSON

    def _write(self, seq: SequenceInfo, results: Iterator[VisTrack]) -> list[dict]:
        entries = []
        for track in results:
            if not isinstance(track, VisTrack):
                raise TypeError(f"sequence {seq.name}: expected VisTrack results, got {type(track).__name__}")
            if len(track.segmentations) != len(seq.frames):
                raise ValueError(f"sequence {seq.name}: a track has {len(track.segmentations)} segmentations for "
                                 f"{len(seq.frames)} frames")
            sizes = {tuple(rle["size"]) for rle in track.segmentations if rle is not None}
            if sizes - {(seq.height, seq.width)}:
                raise ValueError(f"sequence {seq.name}: track masks of size {sorted(sizes)}, the video is "
                                 f"{(seq.height, seq.width)}")
            prediction = ytvis.PredictedTrack(seq.meta["video_id"], track.category_id, track.score,
                                              track.segmentations)
            entries.append(dataclasses.asdict(prediction))
        return entries

    def _result_paths(self) -> list[Path]:
        return [self.prediction_path, self.output_dir / RESULTS_ZIP]

    def _finalise(self) -> list[Path]:
        tracks = [ytvis.PredictedTrack(**entry) for _, part in self._parts() for entry in part]
        ytvis.write_results(self.prediction_path, tracks)
        ytvis.write_upload_zip(self.prediction_path, self.output_dir / RESULTS_ZIP)
        return [self.prediction_path, self.output_dir / RESULTS_ZIP]


# ============================================================================================== VOS / PET

class DavisWriter(ResultWriter):
    """DAVIS-2017: a palette PNG per frame, pixel = object id (`VosFrame.id_map`); test-dev also zipped."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir

    def _write(self, seq: SequenceInfo, results: Iterator[VosFrame]) -> dict:
        folder = self.output_dir / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        for frame in _frames_in_order(seq, results, VosFrame):
            davis.write_label_png(folder / f"{seq.frame_names[frame.frame_index]}.png", frame.id_map())
        return {"frames": len(seq.frames)}

    def _result_paths(self) -> list[Path]:
        return _sequence_folders(self) + [self.output_dir / RESULTS_ZIP]

    def _finalise(self) -> list[Path]:
        if self.benchmark.split != "testdev":
            return [self.output_dir]
        archive_path = self.output_dir / RESULTS_ZIP
        with atomic_open(archive_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for seq in self.benchmark.sequences():
                for name in seq.frame_names:
                    archive.write(self.output_dir / seq.name / f"{name}.png", arcname=f"{seq.name}/{name}.png")
        return [self.output_dir, archive_path]


class BurstWriter(ResultWriter):
    """BURST: each object's mask as RLE on the annotated frames, merged into the first-frame annotation file."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir / RESULTS_JSON

    def _write(self, seq: SequenceInfo, results: Iterator[VosFrame]) -> dict:
        annotated: Mapping[int, str] = seq.meta["annotated"]
        frames: dict[str, dict[str, dict]] = {}
        for frame in _frames_in_order(seq, results, VosFrame):
            if frame.frame_index in annotated:
                # Empty masks are left out: an encoded empty mask lowers the score (EVAL.md §5).
                frames[annotated[frame.frame_index]] = {
                    str(object_id): encode_rle(mask) for object_id, mask in frame.masks.items() if mask.any()}
        return {"frames": frames}

    def _result_paths(self) -> list[Path]:
        return [self.prediction_path]

    def _finalise(self) -> list[Path]:
        content, _ = burst.read_burst_annotations(self.benchmark.paths["annotations"])
        masks = {seq.name: {image: {int(track): rle for track, rle in tracks.items()}
                            for image, tracks in part["frames"].items()}
                 for seq, part in self._parts()}
        burst.write_burst_results(self.prediction_path, content, masks)
        return [self.prediction_path]


# ============================================================================================== VPS

class _DenseTrackIds:
    """Track ids renumbered 1, 2, ... in order of appearance within one video: the accumulator numbers every track
    of every clip, painted or not, and KITTI-STEP's evaluation needs instance ids below 1000."""

    def __init__(self) -> None:
        self._dense: dict[int, int] = {}

    def __call__(self, instance: np.ndarray) -> np.ndarray:
        present = np.unique(instance)
        present = present[present > 0]
        for track_id in present.tolist():
            self._dense.setdefault(track_id, len(self._dense) + 1)
        lookup = np.zeros(int(present.max(initial=0)) + 1, np.int64)
        lookup[present] = [self._dense[t] for t in present.tolist()]
        return lookup[instance]


class KittiStepWriter(ResultWriter):
    """KITTI-STEP: a 3-channel PNG per frame (R = semantic class, G·256 + B = track id)."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir

    def _write(self, seq: SequenceInfo, results: Iterator[PanopticFrame]) -> dict:
        folder = self.output_dir / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        dense = _DenseTrackIds()
        for frame in _frames_in_order(seq, results, PanopticFrame):
            instance = dense(frame.instance)
            if instance.max(initial=0) >= kitti_step.MAX_INSTANCES_PER_CATEGORY:
                raise ValueError(f"sequence {seq.name}: more than {kitti_step.MAX_INSTANCES_PER_CATEGORY - 1} tracks, "
                                 "which KITTI-STEP PNGs cannot number (lower max_tracks_per_video)")
            kitti_step.write_kitti_step_png(folder / f"{seq.frame_names[frame.frame_index]}.png", frame.semantic,
                                            instance)
        return {"frames": len(seq.frames)}

    def _result_paths(self) -> list[Path]:
        return _sequence_folders(self)

    def _finalise(self) -> list[Path]:
        return [self.output_dir]


def _segment_encoder(benchmark: Benchmark) -> panoptic.SegmentIdEncoder:
    """Segment ids for one video's predicted frames, coloured from the benchmark's category table; every class
    index is a category (no ignore label)."""
    return panoptic.SegmentIdEncoder(vocabulary(benchmark.name).categories(), ignore_label=None)


class CityscapesVpsWriter(ResultWriter):
    """Cityscapes-VPS: the annotated frames as pan_pred/<image id>.png and pred.json, in ground-truth order."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir

    def _write(self, seq: SequenceInfo, results: Iterator[PanopticFrame]) -> dict:
        folder = self.output_dir / panoptic.PRED_PNG_DIR
        folder.mkdir(parents=True, exist_ok=True)
        encoder = _segment_encoder(self.benchmark)
        annotations = []
        for frame in _frames_in_order(seq, results, PanopticFrame):
            image_id = seq.meta["image_ids"][frame.frame_index]
            if image_id is None:  # not an annotated frame
                continue
            ids, segments = encoder.encode(frame.semantic, frame.instance)
            annotations.append(panoptic.write_prediction_frame(folder / f"{image_id}.png", ids, segments,
                                                               image_id=image_id))
        return {"annotations": annotations}

    def _result_paths(self) -> list[Path]:
        return _panoptic_paths(self)

    def _finalise(self) -> list[Path]:
        # The official evaluator pairs pred.json entries with the ground truth's images by position, and the
        # ground truth lists them sorted by file name, i.e. by image id.
        annotations = sorted((a for _, part in self._parts() for a in part["annotations"]),
                             key=lambda a: a["image_id"])
        path = panoptic.write_prediction_json(self.output_dir, annotations)
        return [path, self.output_dir / panoptic.PRED_PNG_DIR]


class VipsegWriter(ResultWriter):
    """VIPSeg: pan_pred/<video>/<frame>.png (the ground truth's file names) and pred.json."""

    @property
    def prediction_path(self) -> Path:
        return self.output_dir

    def _write(self, seq: SequenceInfo, results: Iterator[PanopticFrame]) -> dict:
        folder = self.output_dir / panoptic.PRED_PNG_DIR / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        encoder = _segment_encoder(self.benchmark)
        annotations = []
        for frame in _frames_in_order(seq, results, PanopticFrame):
            file_name = seq.meta["file_names"][frame.frame_index]
            ids, segments = encoder.encode(frame.semantic, frame.instance)
            annotations.append(panoptic.write_prediction_frame(folder / file_name, ids, segments, file_name=file_name))
        return {"video_id": seq.name, "annotations": annotations}

    def _result_paths(self) -> list[Path]:
        return _panoptic_paths(self)

    def _finalise(self) -> list[Path]:
        path = panoptic.write_prediction_json(self.output_dir, [part for _, part in self._parts()])
        return [path, self.output_dir / panoptic.PRED_PNG_DIR]


WRITERS: dict[str, type[ResultWriter]] = {  # by `BenchmarkInfo.layout`
    "ytvis": VisWriter,
    "davis": DavisWriter,
    "burst": BurstWriter,
    "kitti_step": KittiStepWriter,
    "cityscapes_vps": CityscapesVpsWriter,
    "vipseg": VipsegWriter,
}


def open_writer(benchmark: Benchmark, output_dir: str | Path) -> ResultWriter:
    """The writer of `benchmark`'s official files into `output_dir`."""
    return WRITERS[benchmark.layout](benchmark, Path(output_dir))
