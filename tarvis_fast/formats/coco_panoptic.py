"""COCO-panoptic image annotations (`segments.json` + a folder of panoptic PNGs): the layout of the image datasets
the original pre-trains on (COCO, ADE20k, Cityscapes, Mapillary; SPEC §7).

    data = read_coco_panoptic(Path("coco_panoptic/segments.json"))
    data.categories        # in file order: (id, name, isthing, has_instances)
    data.images[0]         # PanopticImage(id, file_name, png_name, height, width, segments)

`segments.json` holds `categories`, `images` (id, file_name, height, width) and `annotations` (image_id, file_name of
the PNG, segments_info: id, category_id, iscrowd). A PNG pixel's segment id is R + 256·G + 65536·B, 0 unlabelled
(`formats.panoptic.rgb2id`). An image without an annotation entry has no segments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tarvis_fast.formats.jsonfile import (
    json_field,
    json_image_size,
    json_list,
    read_json,
)
from tarvis_fast.formats.panoptic import MAX_SEGMENT_ID, Segment


class CocoPanopticError(ValueError):
    """A COCO-panoptic annotation file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class PanopticCategory:
    """isthing: the COCO-panoptic flag; has_instances: Cityscapes' own flag (None when the file has none)."""

    id: int
    name: str
    isthing: bool | None
    has_instances: bool | None = None


@dataclass(frozen=True)
class PanopticImage:
    id: Any
    file_name: str
    png_name: str
    height: int
    width: int
    segments: tuple[Segment, ...]   # area: the json's, 0 when absent


@dataclass(frozen=True)
class CocoPanoptic:
    path: Path
    categories: tuple[PanopticCategory, ...]
    images: tuple[PanopticImage, ...]


def _flag(entry: dict, key: str) -> bool | None:
    return None if entry.get(key) is None else bool(entry[key])


def _categories(content: Any, where: str) -> tuple[PanopticCategory, ...]:
    categories, seen = [], set()
    for i, entry in enumerate(json_list(content, "categories", where, CocoPanopticError)):
        here = f"{where}: categories[{i}]"
        try:
            cat_id = int(json_field(entry, "id", here, CocoPanopticError))
        except (TypeError, ValueError):
            raise CocoPanopticError(f"{here}: id must be an integer") from None
        if cat_id in seen:
            raise CocoPanopticError(f"{where}: category id {cat_id} listed twice")
        seen.add(cat_id)
        categories.append(PanopticCategory(cat_id, str(entry.get("name", cat_id)), _flag(entry, "isthing"),
                                           _flag(entry, "hasInstances")))
    return tuple(categories)


def read_coco_panoptic(path: Path) -> CocoPanoptic:
    """The categories and images of a COCO-panoptic `segments.json`, in file order. Errors (CocoPanopticError,
    FileNotFoundError) name the file: missing fields, an annotation of an unknown image, a segment of an unknown
    category, a segment id outside 1..2^24-1."""
    where = str(path)
    content = read_json(path, CocoPanopticError)
    categories = _categories(content, where)
    known = {c.id for c in categories}
    entries: dict[Any, tuple[str, int, int]] = {}
    for i, entry in enumerate(json_list(content, "images", where, CocoPanopticError)):
        here = f"{where}: images[{i}]"
        image_id = json_field(entry, "id", here, CocoPanopticError)
        entries[image_id] = (str(json_field(entry, "file_name", here, CocoPanopticError)),
                             *json_image_size(entry, here, CocoPanopticError))
    annotations = json_field(content, "annotations", where, CocoPanopticError)
    if not isinstance(annotations, list):
        raise CocoPanopticError(f"{where}: 'annotations' must be a list")
    pngs: dict[Any, str] = {}
    segments: dict[Any, tuple[Segment, ...]] = {}
    for i, entry in enumerate(annotations):
        here = f"{where}: annotations[{i}]"
        image_id = json_field(entry, "image_id", here, CocoPanopticError)
        if image_id not in entries:
            raise CocoPanopticError(f"{here}: image_id {image_id!r} is not in 'images'")
        pngs[image_id] = str(json_field(entry, "file_name", here, CocoPanopticError))
        infos = json_field(entry, "segments_info", here, CocoPanopticError)
        if not isinstance(infos, list):
            raise CocoPanopticError(f"{here}: 'segments_info' must be a list")
        parsed = []
        for info in infos:
            seg_id = int(json_field(info, "id", here, CocoPanopticError))
            category = int(json_field(info, "category_id", f"{here} segment {seg_id}", CocoPanopticError))
            if not 0 < seg_id <= MAX_SEGMENT_ID:
                raise CocoPanopticError(f"{here}: segment id {seg_id} outside [1, {MAX_SEGMENT_ID}] (0 is unlabelled)")
            if category not in known:
                raise CocoPanopticError(f"{here}: segment {seg_id} has unknown category_id {category}")
            parsed.append(Segment(seg_id, category, bool(info.get("iscrowd", 0)), int(info.get("area", 0))))
        segments[image_id] = tuple(parsed)
    images = tuple(PanopticImage(image_id, file_name, pngs.get(image_id, str(Path(file_name).with_suffix(".png"))),
                                 height, width, segments.get(image_id, ()))
                   for image_id, (file_name, height, width) in entries.items())
    return CocoPanoptic(Path(path), categories, images)
