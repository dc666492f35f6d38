"""YouTube-VIS / OVIS json: ground truth, results.json and the zip uploaded to the evaluation servers (EVAL.md §1).

Ground truth: {"videos": [{id, height, width, length, file_names, ...}], "categories": [{id, name, ...}],
"annotations": [{id, video_id, category_id, iscrowd, segmentations: [RLE | null per frame],
areas: [int | null per frame], occlusion (OVIS): ["no_occlusion" | "slight_occlusion" | "severe_occlusion" | null]}]}.
RLEs are COCO RLEs, uncompressed (counts a list, as the real YouTube-VIS files have) or compressed.

Results: a list of {"video_id", "category_id", "score", "segmentations": [RLE | null per frame]}, one entry per
predicted track, with one segmentation per frame of the video (compressed RLE with `counts` as str; null where
the track has no mask, which the official evaluators treat like an empty mask).
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.jsonfile import (
    json_field,
    json_image_size,
    json_list,
    read_json,
)
from tarvis_fast.formats.rle import RLE, encode_rle, to_compressed
from tarvis_fast.formats.video_json import VideoSequence

OCCLUSION_LEVELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")
RESULTS_NAME = "results.json"  # the name the servers expect inside the zip


@dataclass(frozen=True)
class Video:
    id: int
    height: int
    width: int
    length: int


@dataclass(frozen=True)
class VideoFrames:
    """One entry of a json's `videos` list as inference reads it: the frames to run."""

    id: int
    height: int
    width: int
    file_names: list[str]   # "<video folder>/<frame file>", in order

    @property
    def folder(self) -> str:
        return self.file_names[0].split("/")[0]


@dataclass(frozen=True)
class GroundTruthTrack:
    """One annotated object: per-frame compressed RLEs (counts as bytes, pycocotools' form) or None."""

    id: int
    video_id: int
    category_id: int
    iscrowd: bool
    segmentations: list[RLE | None]
    areas: list[float | None]
    occlusion: list[str | None] | None  # OVIS only


@dataclass(frozen=True)
class GroundTruth:
    videos: dict[int, Video]
    category_ids: list[int]
    tracks: list[GroundTruthTrack]


@dataclass(frozen=True)
class PredictedTrack:
    """One predicted track: per-frame RLEs (compressed; counts str or bytes) or None where it has no mask."""

    video_id: int
    category_id: int
    score: float
    segmentations: list[RLE | None]


def track_from_masks(video_id: int, category_id: int, score: float, masks: np.ndarray) -> PredictedTrack:
    """A track from its binary masks (T, H, W); frames with an empty mask get no segmentation (null)."""
    if masks.ndim != 3:
        raise ValueError(f"track of video {video_id}: masks must be (T, H, W), got shape {masks.shape}")
    segmentations = [encode_rle(mask) if mask.any() else None for mask in masks]
    return PredictedTrack(int(video_id), int(category_id), float(score), segmentations)


def json_rle(rle: RLE | None) -> dict | None:
    """An RLE as the YouTube-VIS json holds it (counts a str, size plain ints); None stays None."""
    if rle is None:
        return None
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": counts}


def write_results(path: str | Path, tracks: Iterable[PredictedTrack]) -> None:
    """Write results.json (atomically)."""
    entries = [{"video_id": t.video_id, "category_id": t.category_id, "score": t.score,
                "segmentations": [json_rle(rle) for rle in t.segmentations]} for t in tracks]
    with atomic_open(path, "w") as handle:
        json.dump(entries, handle)


def write_upload_zip(results_json: str | Path, zip_path: str | Path) -> None:
    """Pack results.json into the zip the YouTube-VIS / OVIS servers take (it must sit at the zip's root)."""
    with atomic_open(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(results_json, arcname=RESULTS_NAME)


def _frame_rle(segmentation: Any, video: Video, where: str) -> RLE | None:
    """One per-frame segmentation -> compressed RLE (bytes counts) of the video's size, or None."""
    if segmentation is None:
        return None
    if not isinstance(segmentation, dict) or not isinstance(segmentation.get("counts"), (str, bytes, list)):
        raise ValueError(f"{where}: expected an RLE dict with 'size' and 'counts' (str or list) or null, "
                         f"got {str(segmentation)[:60]}")
    rle = to_compressed(segmentation)
    if list(rle["size"]) != [video.height, video.width]:
        raise ValueError(f"{where}: mask size {list(rle['size'])} (H, W), but video {video.id} is "
                         f"{[video.height, video.width]}")
    return rle


def _require(entry: Mapping, keys: Sequence[str], where: str) -> None:
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")


def _frame_list(entry: Mapping, key: str, video: Video, where: str) -> list:
    values = entry[key]
    if not isinstance(values, list) or len(values) != video.length:
        got = f"a list of {len(values)}" if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{where}: '{key}' must list one entry per frame of video {video.id} ({video.length}), "
                         f"got {got}")
    return values


def read_ground_truth(path: str | Path, *, occlusion: bool = False) -> GroundTruth:
    """Read a YouTube-VIS or (occlusion=True) OVIS ground-truth json; raises naming the file and entry."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a json object with videos, categories and annotations")
    _require(data, ("videos", "categories", "annotations"), str(path))
    videos = {}
    for i, v in enumerate(data["videos"]):
        _require(v, ("id", "height", "width", "length"), f"{path}: videos[{i}]")
        videos[v["id"]] = Video(int(v["id"]), int(v["height"]), int(v["width"]), int(v["length"]))
    category_ids = sorted(int(c["id"]) for c in data["categories"])
    tracks = []
    for i, ann in enumerate(data["annotations"] or []):
        where = f"{path}: annotations[{i}]"
        _require(ann, ("id", "video_id", "category_id", "segmentations", "areas"), where)
        video = videos.get(ann["video_id"])
        if video is None:
            raise ValueError(f"{where}: unknown video_id {ann['video_id']}")
        if ann["category_id"] not in category_ids:
            raise ValueError(f"{where}: unknown category_id {ann['category_id']}")
        segmentations = [_frame_rle(s, video, f"{where} frame {t}")
                         for t, s in enumerate(_frame_list(ann, "segmentations", video, where))]
        areas = _frame_list(ann, "areas", video, where)
        levels = None
        if occlusion:
            _require(ann, ("occlusion",), where)
            levels = _frame_list(ann, "occlusion", video, where)
            unknown = {level for level in levels if level is not None} - set(OCCLUSION_LEVELS)
            if unknown:
                raise ValueError(f"{where}: unknown occlusion levels {sorted(unknown)}; expected {OCCLUSION_LEVELS}")
            if all(level is None for level in levels):
                raise ValueError(f"{where}: no frame has an occlusion level")
        tracks.append(GroundTruthTrack(int(ann["id"]), video.id, int(ann["category_id"]), bool(ann.get("iscrowd", 0)),
                                       segmentations, areas, levels))
    return GroundTruth(videos, category_ids, tracks)


def read_video_frames(path: str | Path, error: type[Exception] = ValueError, hint: str = "") -> list[VideoFrames]:
    """The `videos` of a YouTube-VIS / OVIS json (a ground truth or the annotation-free inference file), each with
    its frame paths; `error` (naming the file and the entry, `hint` appended where the file is unreadable) when
    the list is missing or malformed."""
    where = str(path)
    videos = json_list(read_json(path, error, hint), "videos", where, error)
    return [read_video_frames_entry(video, f"{where}: videos[{i}]", error) for i, video in enumerate(videos)]


def read_results(path: str | Path, videos: Mapping[int, Video], category_ids: Iterable[int]) -> list[PredictedTrack]:
    """Read results.json, checked against the ground truth's videos and categories: raises naming the
    file, the entry and the frame for an unknown video or category id, a wrong number of frames or a
    mask of the wrong size. Segmentations come back as compressed RLEs (counts bytes) or None."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a json list of tracks, got {type(data).__name__}")
    known_categories = set(category_ids)
    tracks = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
        _require(entry, ("video_id", "category_id", "score", "segmentations"), where)
        video = videos.get(entry["video_id"])
        if video is None:
            raise ValueError(f"{where}: unknown video_id {entry['video_id']}")
        if entry["category_id"] not in known_categories:
            raise ValueError(f"{where}: unknown category_id {entry['category_id']}")
        if not isinstance(entry["score"], (int, float)) or isinstance(entry["score"], bool):
            raise ValueError(f"{where}: score must be a number, got {entry['score']!r}")
        segmentations = [_frame_rle(s, video, f"{where} (video {video.id}) frame {t}")
                         for t, s in enumerate(_frame_list(entry, "segmentations", video, where))]
        tracks.append(PredictedTrack(video.id, int(entry["category_id"]), float(entry["score"]), segmentations))
    return tracks


def read_video_sequences(path: str | Path) -> tuple[dict[int, str], list[VideoSequence]]:
    """A YouTube-VIS / OVIS ground truth as the original's training mapper sees it: (category id -> name, one
    generic `VideoSequence` per video), instance ids numbering each video's annotations from 0, null frames left
    out. Raises naming the file and entry for a missing field, an unknown video or category id, an empty file or a
    mask whose size differs from its video's."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a json object with videos, categories and annotations")
    _require(data, ("videos", "categories", "annotations"), str(path))
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    entries = json_list(data, "videos", str(path))
    frames = {int(v["id"]): read_video_frames_entry(v, f"{path}: videos[{i}]") for i, v in enumerate(entries)}
    tracks: dict[int, list[tuple[int, list]]] = {video_id: [] for video_id in frames}
    for i, ann in enumerate(data["annotations"] or []):
        where = f"{path}: annotations[{i}]"
        _require(ann, ("video_id", "category_id", "segmentations"), where)
        if ann["video_id"] not in frames:
            raise ValueError(f"{where}: unknown video_id {ann['video_id']}")
        if ann["category_id"] not in categories:
            raise ValueError(f"{where}: unknown category_id {ann['category_id']}")
        video_entry = frames[ann["video_id"]]
        video = Video(video_entry.id, video_entry.height, video_entry.width, len(video_entry.file_names))
        masks = [_frame_rle(s, video, f"{where} frame {t}")
                 for t, s in enumerate(_frame_list(ann, "segmentations", video, where))]
        tracks[video.id].append((int(ann["category_id"]), masks))
    sequences = []
    for video_id, entry in frames.items():
        video_tracks = tracks[video_id]
        segmentations = tuple({iid: masks[t] for iid, (_, masks) in enumerate(video_tracks) if masks[t] is not None}
                              for t in range(len(entry.file_names)))
        sequences.append(VideoSequence(str(video_id), entry.height, entry.width, tuple(entry.file_names),
                                       {iid: category for iid, (category, _) in enumerate(video_tracks)},
                                       segmentations))
    return categories, sequences


def read_video_frames_entry(video: Any, where: str, error: type[Exception] = ValueError) -> VideoFrames:
    """One entry of a json's `videos` list, checked: '<video>/<frame>' file names, a positive size, an integer id."""
    file_names = json_list(video, "file_names", where, error)
    if not all(isinstance(f, str) and "/" in f for f in file_names):
        raise error(f"{where}: file_names must be '<video>/<frame>' paths")
    height, width = json_image_size(video, where, error)
    try:
        video_id = int(json_field(video, "id", where, error))
    except (TypeError, ValueError):
        raise error(f"{where}: id must be an integer") from None
    return VideoFrames(video_id, height, width, list(file_names))
