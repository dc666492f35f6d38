"""The original TarViS's generic video json (SPEC §7): its training annotations of DAVIS, KITTI-STEP and
Cityscapes-VPS (`davis_semisupervised.json`, `kitti_step.json`, `cityscapes_vps.json`), and the form its format
mappers give YouTube-VIS, OVIS and BURST.

    {"meta": {"category_labels": {"<id>": name}},
     "sequences": [{"id", "height", "width", "image_paths": [relative paths],
                    "categories": {"<instance id>": category id},
                    "segmentations": [per frame {"<instance id>": mask}],
                    "semantic_segmentations" (optional): [per frame {"<class id>": mask}]}]}

A mask is a COCO compressed-RLE counts string, or a list of uncompressed RLE counts, of the sequence's size.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tarvis_fast.formats.jsonfile import json_field, json_image_size, json_list, read_json
from tarvis_fast.formats.rle import RLE


class VideoJsonError(ValueError):
    """A video annotation file is malformed; the message names the file and the sequence."""


@dataclass(frozen=True)
class VideoSequence:
    """One annotated video. Masks are RLE dicts `{"size": [H, W], "counts": str | list}` (pycocotools decodes them).

    segmentations:          per frame, instance id -> mask (an instance absent from a frame has no entry)
    semantic_segmentations: per frame, class id -> mask; None where the file has none
    """

    id: str
    height: int
    width: int
    image_paths: tuple[str, ...]
    categories: Mapping[int, int]
    segmentations: tuple[Mapping[int, RLE], ...]
    semantic_segmentations: tuple[Mapping[int, RLE], ...] | None = None

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclass(frozen=True)
class VideoJson:
    category_labels: Mapping[int, str]   # category id -> name (empty for the class-agnostic DAVIS file)
    sequences: tuple[VideoSequence, ...]


def _masks(frame: Any, size: tuple[int, int], where: str) -> dict[int, RLE]:
    if not isinstance(frame, dict):
        raise VideoJsonError(f"{where}: expected an object of masks, got {type(frame).__name__}")
    masks = {}
    for key, counts in frame.items():
        if not isinstance(counts, (str, list)):
            raise VideoJsonError(f"{where}, id {key}: a mask is an RLE counts string or list, got "
                                 f"{type(counts).__name__}")
        masks[int(key)] = {"size": list(size), "counts": counts}
    return masks


def _sequence(entry: Any, path: Path, index: int) -> VideoSequence:
    where = f"{path}: sequences[{index}]"
    seq_id = str(json_field(entry, "id", where, VideoJsonError))
    where = f"{path}: sequence {seq_id}"
    size = json_image_size(entry, where, VideoJsonError)
    image_paths = tuple(str(p) for p in json_list(entry, "image_paths", where, VideoJsonError))
    frames = json_field(entry, "segmentations", where, VideoJsonError)
    if not isinstance(frames, list) or len(frames) != len(image_paths):
        raise VideoJsonError(f"{where}: 'segmentations' must list one entry per image path ({len(image_paths)})")
    categories = {int(k): int(v) for k, v in json_field(entry, "categories", where, VideoJsonError).items()}
    segmentations = tuple(_masks(frame, size, f"{where}, frame {t}") for t, frame in enumerate(frames))
    annotated = {iid for frame in segmentations for iid in frame}
    if annotated - set(categories):
        raise VideoJsonError(f"{where}: instance ids {sorted(annotated - set(categories))} have masks but are not in "
                             f"'categories'")
    semantic = entry.get("semantic_segmentations")
    if semantic is not None:
        if not isinstance(semantic, list) or len(semantic) != len(image_paths):
            raise VideoJsonError(f"{where}: 'semantic_segmentations' must list one entry per image path")
        semantic = tuple(_masks(frame, size, f"{where}, semantic frame {t}") for t, frame in enumerate(semantic))
    return VideoSequence(seq_id, *size, image_paths, categories, segmentations, semantic)


def read_video_json(path: str | Path) -> VideoJson:
    """Read and check a generic video json; VideoJsonError naming the file (and sequence) when malformed, when it
    holds no sequence, or when a sequence names a category the file's `category_labels` do not list."""
    path = Path(path)
    content = read_json(path, VideoJsonError)
    sequences = json_list(content, "sequences", str(path), VideoJsonError)
    meta = content.get("meta") or {}
    labels = {int(k): str(v) for k, v in (meta.get("category_labels") or {}).items()}
    parsed = tuple(_sequence(entry, path, i) for i, entry in enumerate(sequences))
    if labels:
        for seq in parsed:
            unknown = set(seq.categories.values()) - set(labels)
            if unknown:
                raise VideoJsonError(f"{path}: sequence {seq.id}: unknown category ids {sorted(unknown)} (not in "
                                     f"meta.category_labels)")
    return VideoJson(labels, parsed)
