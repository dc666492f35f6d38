"""VIPSeg as the original TarViS trains on it (SPEC §7): `video_info.json` + single-channel panoptic PNGs.

    video_info.json  {"sequences": [{"name", "filenames" (no extension), "instance_ids", "stuff_classes" (0-based),
                                     "frame_instance_occupancy": [per frame, the instance ids in it]}],
                      "categories": [{"id", "name"}]}
    <masks>/<name>/<filename>.png    pixel value v: a thing instance (v in instance_ids) of class v // 100 - 1,
                                     stuff of class v - 1 (v - 1 in stuff_classes), 0 = void

(The evaluation ground truth, RGB PNGs + `panoptic_gt_VIPSeg_*.json`, is read by `formats.panoptic`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tarvis_fast.formats.jsonfile import json_field, json_list, read_json

THING_ID_DIVISOR = 100  # a thing pixel holds (class + 1) * 100 + its instance number


class VipsegTrainError(ValueError):
    """A VIPSeg training file is malformed; the message names the file (and the video)."""


@dataclass(frozen=True)
class VipsegVideo:
    name: str
    filenames: tuple[str, ...]
    instance_ids: tuple[int, ...]
    stuff_classes: tuple[int, ...]
    frame_instances: tuple[frozenset[int], ...]  # per frame, the instance ids present

    def __len__(self) -> int:
        return len(self.filenames)


def thing_class(value: int) -> int:
    """0-based class of a thing pixel value."""
    return value // THING_ID_DIVISOR - 1


def read_video_info(path: str | Path) -> tuple[dict[int, str], list[VipsegVideo]]:
    """(category id -> name, videos) of a `video_info.json`; VipsegTrainError naming the file and video when
    malformed or empty, or when an instance id or stuff class names an unknown category."""
    path = Path(path)
    content = read_json(path, VipsegTrainError)
    where = str(path)
    categories = {int(json_field(c, "id", f"{where} categories", VipsegTrainError)): str(c.get("name", ""))
                  for c in json_list(content, "categories", where, VipsegTrainError)}
    videos = []
    for i, entry in enumerate(json_list(content, "sequences", where, VipsegTrainError)):
        name = str(json_field(entry, "name", f"{where}: sequences[{i}]", VipsegTrainError))
        at = f"{where}: video {name}"
        filenames = tuple(str(f) for f in json_list(entry, "filenames", at, VipsegTrainError))
        instance_ids = tuple(int(v) for v in json_field(entry, "instance_ids", at, VipsegTrainError))
        stuff = tuple(int(c) for c in json_field(entry, "stuff_classes", at, VipsegTrainError))
        occupancy = json_field(entry, "frame_instance_occupancy", at, VipsegTrainError)
        if not isinstance(occupancy, list) or len(occupancy) != len(filenames):
            raise VipsegTrainError(f"{at}: 'frame_instance_occupancy' must list one entry per file name")
        unknown = sorted({thing_class(v) for v in instance_ids} - set(categories)) + sorted(set(stuff) - set(categories))
        if unknown:
            raise VipsegTrainError(f"{at}: unknown category ids {unknown} (instance ids // 100 - 1 and stuff_classes "
                                   "must be ids of 'categories')")
        frame_instances = tuple(frozenset(int(v) for v in frame) for frame in occupancy)
        stray = set().union(*frame_instances) - set(instance_ids)
        if stray:
            raise VipsegTrainError(f"{at}: instance ids {sorted(stray)} are in frame_instance_occupancy but not in "
                                   "instance_ids")
        videos.append(VipsegVideo(name, filenames, instance_ids, stuff, frame_instances))
    return categories, videos


def read_panoptic_values(path: str | Path, shape: tuple[int, int] | None = None, *,
                         native: bool = False) -> np.ndarray:
    """A single-channel (8- or 16-bit) panoptic PNG -> (H, W) int64 pixel values (native: the PNG's own uint8 or
    uint16); VipsegTrainError naming the file when it is missing, has colour channels, or is not of size `shape`."""
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise VipsegTrainError(f"{path}: panoptic mask not found or not readable")
    if values.ndim != 2:
        raise VipsegTrainError(f"{path}: expected a single-channel panoptic PNG, got {values.shape[2]} channels")
    if shape is not None and values.shape != tuple(shape):
        raise VipsegTrainError(f"{path}: size (H, W) = {values.shape}, but its frame is {tuple(shape)}")
    return values if native else values.astype(np.int64)
