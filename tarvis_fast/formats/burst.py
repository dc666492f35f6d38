"""BURST annotation and result JSON (EVAL.md §5; the dataset's ANNOTATION_FORMAT.md).

One file holds `split`, `categories` and `sequences`; a sequence has `id, dataset, seq_name, width, height, fps,
all_image_paths, annotated_image_paths, neg_category_ids, not_exhaustive_category_ids`, `track_category_ids`
({str track id: category id}) and `segmentations`: one {str track id: {"rle": str, ...}} per annotated frame.
`first_frame_annotations_*.json` holds only each track's first annotated frame and adds `point` and `bbox` there.

Results (what the point-exemplar-guided task submits) are the first-frame annotation file with each sequence's
`segmentations` replaced by the predicted masks, `{track id: {"rle": str, "is_gt": false}}` per annotated frame.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.jsonfile import read_json
from tarvis_fast.formats.rle import RLE, encode_rle, rle_area, to_compressed


class BurstFormatError(ValueError):
    """A BURST file is malformed; the message names the file, and the sequence and frame where it applies."""


@dataclass(frozen=True)
class TrackExemplar:
    """A track's first annotation: the prompt of the point (or mask) exemplar-guided task."""

    track_id: int
    category_id: int
    frame_index: int                        # position in `annotated_image_paths`
    image_path: str
    mask: RLE                               # {"size": [H, W], "counts": str}
    point_xy: tuple[float, float] | None    # pixel coordinates, present in first-frame annotation files


@dataclass(frozen=True)
class BurstSequence:
    id: int
    dataset: str
    seq_name: str
    height: int
    width: int
    fps: int
    all_image_paths: tuple[str, ...]
    annotated_image_paths: tuple[str, ...]
    track_category_ids: Mapping[int, int]
    segmentations: tuple[Mapping[int, Mapping[str, Any]], ...]  # per annotated frame: track id -> entry

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.seq_name}"

    def exemplars(self) -> list[TrackExemplar]:
        """Each track's first annotated frame, ordered by track id."""
        first: dict[int, TrackExemplar] = {}
        for t, frame in enumerate(self.segmentations):
            for track_id, entry in frame.items():
                if track_id in first:
                    continue
                point = entry.get("point")
                if isinstance(point, dict):  # the released files store {"x", "y"}; the format doc says [x, y]
                    point = (point["x"], point["y"])
                first[track_id] = TrackExemplar(
                    track_id, self.track_category_ids[track_id], t, self.annotated_image_paths[t],
                    {"size": [self.height, self.width], "counts": entry["rle"]},
                    None if point is None else (float(point[0]), float(point[1])))
        return [first[k] for k in sorted(first)]


def _parse_sequence(entry: Any, path: Path) -> BurstSequence:
    try:
        where = f"{path} (sequence {entry['dataset']}/{entry['seq_name']})"
        annotated = tuple(entry["annotated_image_paths"])
        track_categories = {int(k): int(v) for k, v in entry["track_category_ids"].items()}
        frames = entry["segmentations"]
        sequence = BurstSequence(int(entry["id"]), str(entry["dataset"]), str(entry["seq_name"]), int(entry["height"]),
                                 int(entry["width"]), int(entry.get("fps", 0)), tuple(entry["all_image_paths"]),
                                 annotated, track_categories,
                                 tuple({int(k): v for k, v in frame.items()} for frame in frames))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise BurstFormatError(f"{path}: malformed sequence entry ({type(err).__name__}: {err})") from None
    if len(sequence.segmentations) != len(annotated):
        raise BurstFormatError(f"{where}: {len(sequence.segmentations)} segmentation entries for {len(annotated)} "
                               "annotated frames")
    for t, frame in enumerate(sequence.segmentations):
        for track_id, mask in frame.items():
            if track_id not in track_categories:
                raise BurstFormatError(f"{where}, frame {annotated[t]}: track id {track_id} is not in "
                                       "track_category_ids")
            if not isinstance(mask, dict) or not isinstance(mask.get("rle"), str):
                raise BurstFormatError(f"{where}, frame {annotated[t]}: track {track_id} has no RLE string")
    return sequence


def read_burst_annotations(path: Path) -> tuple[dict, list[BurstSequence]]:
    """A BURST annotation file (ground truth, first-frame annotations or results) -> (its JSON, its sequences)."""
    path = Path(path)
    content = read_json(path, BurstFormatError)
    if not isinstance(content, dict) or not isinstance(content.get("sequences"), list):
        raise BurstFormatError(f"{path}: expected an object with a 'sequences' list")
    return content, [_parse_sequence(entry, path) for entry in content["sequences"]]


def check_burst_results(path: Path, gt: list[BurstSequence], gt_split: str | None = None) -> None:
    """Check a results file against the ground truth before scoring it: known sequences, frames of the video in its
    order, track ids and their categories as in the ground truth, one entry per listed frame."""
    content, sequences = read_burst_annotations(path)
    if gt_split is not None and "split" in content and content["split"] != gt_split:
        raise BurstFormatError(f"{path}: split {content['split']!r} but the ground truth is {gt_split!r}")
    gt_by_name = {seq.name: seq for seq in gt}
    for seq in sequences:
        where = f"{path} (sequence {seq.name})"
        reference = gt_by_name.get(seq.name)
        if reference is None:
            raise BurstFormatError(f"{where}: not a ground-truth sequence")
        frame_order = {p: i for i, p in enumerate(reference.all_image_paths)}
        positions = []
        for image_path in seq.annotated_image_paths:
            if image_path not in frame_order:
                raise BurstFormatError(f"{where}, frame {image_path}: not a frame of this video")
            positions.append(frame_order[image_path])
        if positions != sorted(positions) or len(set(positions)) != len(positions):
            raise BurstFormatError(f"{where}: annotated_image_paths are not in the video's frame order")
        for t, frame in enumerate(seq.segmentations):
            for track_id in frame:
                if track_id not in reference.track_category_ids:
                    raise BurstFormatError(f"{where}, frame {seq.annotated_image_paths[t]}: unknown track id "
                                           f"{track_id} (ground-truth tracks: {sorted(reference.track_category_ids)})")
                if seq.track_category_ids[track_id] != reference.track_category_ids[track_id]:
                    raise BurstFormatError(f"{where}: track {track_id} has category {seq.track_category_ids[track_id]}"
                                           f", the ground truth {reference.track_category_ids[track_id]}")


def write_burst_results(path: Path, annotations: dict,
                        masks: Mapping[str, Mapping[str, Mapping[int, RLE | np.ndarray]]]) -> None:
    """Write point-exemplar-guided results, atomically.

    annotations: the first-frame annotation JSON the run was given (not modified).
    masks: sequence name ("dataset/seq_name") -> image file name -> track id -> mask, as an RLE or a bool (H, W)
        array. Frames that are not annotated in the ground truth are dropped and empty masks left out (an encoded
        empty mask lowers the score). Sequences missing from `masks` are left out of the file.
    """
    content = copy.deepcopy(annotations)
    sequences = {f"{s['dataset']}/{s['seq_name']}": s for s in content.get("sequences", [])}
    unknown = set(masks) - set(sequences)
    if unknown:
        raise BurstFormatError(f"results for sequences not in the annotations: {sorted(unknown)[:5]}")
    written = []
    for name, frames in masks.items():
        seq = sequences[name]
        tracks = {int(k) for k in seq["track_category_ids"]}
        annotated = {image_path: t for t, image_path in enumerate(seq["annotated_image_paths"])}
        segmentations: list[dict] = [{} for _ in annotated]
        for image_path, frame_masks in frames.items():
            if image_path not in annotated:
                continue
            for track_id, mask in frame_masks.items():
                if int(track_id) not in tracks:
                    raise BurstFormatError(f"sequence {name}, frame {image_path}: unknown track id {track_id}")
                rle = to_compressed(encode_rle(mask) if isinstance(mask, np.ndarray) else mask)
                if list(rle["size"]) != [seq["height"], seq["width"]]:
                    raise BurstFormatError(f"sequence {name}, frame {image_path}, track {track_id}: mask size "
                                           f"{list(rle['size'])} != {[seq['height'], seq['width']]}")
                if rle_area(rle) == 0:
                    continue
                segmentations[annotated[image_path]][str(int(track_id))] = {
                    "rle": rle["counts"].decode("ascii"), "is_gt": False}
        seq["segmentations"] = segmentations
        written.append(seq)
    content["sequences"] = written
    with atomic_open(path, "w") as handle:
        json.dump(content, handle)


def write_burst_annotations(path: Path, split: str, sequences: list[dict]) -> None:
    """Write a BURST annotation file (ground truth `all_classes.json` or `first_frame_annotations.json`), atomically:
    `{split, categories: [], sequences}`; the evaluator takes its categories from its own TAO table, not the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        json.dump({"split": split, "categories": [], "sequences": sequences}, handle)
