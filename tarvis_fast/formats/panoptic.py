"""Panoptic PNG + JSON formats of Cityscapes-VPS and VIPSeg: ground truth and predictions, read and written.

A panoptic PNG is RGB; the segment id of a pixel is R + 256·G + 65536·B (panopticapi's `rgb2id`), 0 is VOID.
A JSON lists each frame's segments (`segments_info`: id, category_id, iscrowd, area).

Layouts (EVAL.md §3):

    Cityscapes-VPS ground truth   <gt>/panpotic_gt_val_city_vps.json (sic) + <gt>/panoptic_video/<name>_final_mask.png
    Cityscapes-VPS prediction     <pred>/pred.json {"annotations": [...]} in GT image order
                                  + <pred>/pan_pred/<image id>.png
    VIPSeg ground truth           <gt>/panoptic_gt_VIPSeg_val.json + <gt>/panomasksRGB/<video id>/<file name>
    VIPSeg prediction             <pred>/pred.json {"annotations": [{video_id, annotations}]}
                                  + <pred>/pan_pred/<video id>/<file name>

Readers return a `PanopticDataset`: categories and, per video, its frames (PNG path + segments) in evaluation order.
Pixels are read later, one frame at a time, by `load_segment_ids`, which checks a prediction's PNG against its JSON.
Writers turn a video's semantic + instance maps into segment ids with panopticapi-style colours
(`encode_panoptic_video`) and write the PNGs as they come and the JSON on `close()`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.jsonfile import (
    json_field,
    json_image_size,
    json_list,
    read_json,
)

VOID_ID = 0
MAX_SEGMENT_ID = 256**3 - 1

CITYSCAPES_VPS_GT_JSON = "panpotic_gt_val_city_vps.json"  # the dataset's own spelling
CITYSCAPES_VPS_GT_PNG_DIR = "panoptic_video"
CITYSCAPES_VPS_FRAMES_PER_VIDEO = 6  # annotated frames per video; the official evaluator groups by this count
VIPSEG_GT_JSON = "panoptic_gt_VIPSeg_val.json"
VIPSEG_GT_PNG_DIR = "panomasksRGB"
PRED_JSON = "pred.json"
PRED_PNG_DIR = "pan_pred"


class PanopticFormatError(ValueError):
    """A panoptic file (or one frame of it) is malformed; the message names the file and the frame."""


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Segment:
    id: int
    category_id: int
    iscrowd: bool
    area: int

    def to_json(self) -> dict[str, int]:
        return {"id": self.id, "category_id": self.category_id, "iscrowd": int(self.iscrowd), "area": self.area}


@dataclass(frozen=True)
class PanopticFrame:
    """One annotated frame: `png` holds the segment ids, `segments` its JSON entries (one per id, JSON order)."""

    name: str
    png: Path
    json_file: Path
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class PanopticVideo:
    name: str
    frames: tuple[PanopticFrame, ...]


@dataclass(frozen=True)
class PanopticDataset:
    categories: Mapping[int, Category]
    videos: tuple[PanopticVideo, ...]


# ----------------------------------------------------------------------------------------------- PNG <-> ids


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) uint32 segment ids, id = R + 256·G + 65536·B."""
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb2id expects (..., 3) colours, got shape {rgb.shape}")
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(...) integer segment ids in [0, 256³) -> (..., 3) uint8 colours; inverse of `rgb2id`."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in [0, {MAX_SEGMENT_ID}], got [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def read_panoptic_png(path: Path) -> np.ndarray:
    """Panoptic PNG -> (H, W) uint32 segment ids. RGBA files lose their alpha channel; other modes are refused."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA"):
                raise PanopticFormatError(f"{path}: panoptic PNG must be RGB, got mode {image.mode!r}")
            rgb = np.asarray(image)[..., :3]
    except FileNotFoundError:
        raise PanopticFormatError(f"{path}: panoptic PNG not found") from None
    except OSError as err:
        raise PanopticFormatError(f"{path}: not a readable PNG ({err})") from None
    return rgb2id(rgb)


def write_panoptic_png(path: Path, ids: np.ndarray) -> None:
    """(H, W) segment ids -> RGB PNG at `path`, written atomically."""
    if ids.ndim != 2:
        raise ValueError(f"write_panoptic_png expects one (H, W) id map, got shape {ids.shape}")
    with atomic_open(path, "wb") as handle:
        Image.fromarray(id2rgb(ids)).save(handle, format="PNG")


# ------------------------------------------------------------------------------------------ JSON helpers


def _field(entry: Any, key: str, where: str) -> Any:
    return json_field(entry, key, where, PanopticFormatError)


def parse_categories(entries: Any, where: str) -> dict[int, Category]:
    """JSON `categories` list -> {id: Category}, in file order."""
    if not isinstance(entries, list) or not entries:
        raise PanopticFormatError(f"{where}: 'categories' must be a non-empty list")
    categories: dict[int, Category] = {}
    for entry in entries:
        cat_id = int(_field(entry, "id", f"{where} categories"))
        if cat_id in categories:
            raise PanopticFormatError(f"{where}: category id {cat_id} listed twice")
        color = tuple(int(c) for c in entry.get("color", (0, 0, 0)))
        categories[cat_id] = Category(cat_id, str(entry.get("name", cat_id)),
                                      bool(_field(entry, "isthing", f"{where} category {cat_id}")), color)
    return categories


def _parse_segments(entries: Any, categories: Mapping[int, Category], where: str, *, merge_duplicates: bool,
                    need_area: bool) -> tuple[Segment, ...]:
    """`segments_info` -> Segments. Ground truth may list an id twice (the official tools add the areas and keep the
    first entry's category); a prediction may not. Prediction areas are recounted from the PNG, so may be absent."""
    if not isinstance(entries, list):
        raise PanopticFormatError(f"{where}: 'segments_info' must be a list")
    segments: dict[int, Segment] = {}
    for entry in entries:
        seg_id = int(_field(entry, "id", where))
        category_id = int(_field(entry, "category_id", f"{where} segment {seg_id}"))
        if not 0 < seg_id <= MAX_SEGMENT_ID:
            raise PanopticFormatError(f"{where}: segment id {seg_id} outside [1, {MAX_SEGMENT_ID}] (0 is VOID)")
        if category_id not in categories:
            raise PanopticFormatError(f"{where}: segment {seg_id} has unknown category_id {category_id}")
        area = int(_field(entry, "area", f"{where} segment {seg_id}")) if need_area else int(entry.get("area", 0))
        segment = Segment(seg_id, category_id, bool(entry.get("iscrowd", 0)), area)
        if seg_id in segments:
            if not merge_duplicates:
                raise PanopticFormatError(f"{where}: segment id {seg_id} listed twice")
            first = segments[seg_id]
            segment = Segment(seg_id, first.category_id, first.iscrowd, first.area + area)
        segments[seg_id] = segment
    return tuple(segments.values())


# ------------------------------------------------------------------------------------------ pixel loading


def load_segment_ids(frame: PanopticFrame, *, expected_shape: tuple[int, int] | None = None,
                     is_prediction: bool) -> np.ndarray:
    """Read one frame's PNG as (H, W) uint32 ids and check it.

    For a prediction the PNG and the JSON must hold the same ids (VOID aside), as the official evaluators demand.
    Ground-truth PNG ids missing from the JSON are allowed: the evaluators leave such pixels out of every segment.
    """
    ids = read_panoptic_png(frame.png)
    where = f"{frame.png} (frame {frame.name})"
    if expected_shape is not None and ids.shape != tuple(expected_shape):
        raise PanopticFormatError(f"{where}: size {ids.shape[1]}x{ids.shape[0]} (WxH) differs from the ground "
                                  f"truth's {expected_shape[1]}x{expected_shape[0]}")
    if is_prediction:
        in_png = set(np.unique(ids).tolist()) - {VOID_ID}
        in_json = {s.id for s in frame.segments}
        if in_png - in_json:
            raise PanopticFormatError(f"{where}: segment ids {sorted(in_png - in_json)[:10]} are in the PNG but not "
                                      f"in {frame.json_file}")
        if in_json - in_png:
            raise PanopticFormatError(f"{where}: segment ids {sorted(in_json - in_png)[:10]} are in "
                                      f"{frame.json_file} but not in the PNG")
    return ids


# ------------------------------------------------------------------------------------------ Cityscapes-VPS


def _cityscapes_vps_gt_png_name(file_name: str) -> str:
    return file_name.replace("_newImg8bit.png", "_final_mask.png").replace("_leftImg8bit.png", "_gtFine_color.png")


def read_cityscapes_vps_gt(gt_dir: Path) -> PanopticDataset:
    """Cityscapes-VPS ground truth: `images[i]` and `annotations[i]` describe frame i; consecutive groups of
    `CITYSCAPES_VPS_FRAMES_PER_VIDEO` frames form a video (the official evaluator's rule)."""
    json_file = Path(gt_dir) / CITYSCAPES_VPS_GT_JSON
    content = read_json(json_file, PanopticFormatError)
    categories = parse_categories(_field(content, "categories", str(json_file)), str(json_file))
    images = _field(content, "images", str(json_file))
    annotations = _field(content, "annotations", str(json_file))
    if len(images) != len(annotations) or not images:
        raise PanopticFormatError(f"{json_file}: {len(images)} images but {len(annotations)} annotations")
    if len(images) % CITYSCAPES_VPS_FRAMES_PER_VIDEO:
        raise PanopticFormatError(f"{json_file}: {len(images)} frames is not a multiple of "
                                  f"{CITYSCAPES_VPS_FRAMES_PER_VIDEO} annotated frames per video")
    png_names = [_cityscapes_vps_gt_png_name(str(_field(image, "file_name", f"{json_file} images")))
                 for image in images]
    if png_names != sorted(png_names):
        # The official evaluator pairs the *sorted* PNG names with the annotations by position.
        raise PanopticFormatError(f"{json_file}: 'images' are not sorted by file name, so the official evaluator "
                                  "would pair PNGs with the wrong annotations")
    frames = []
    for index, (image, annotation, png_name) in enumerate(zip(images, annotations, png_names)):
        image_id = str(_field(image, "id", f"{json_file} images[{index}]"))
        if "image_id" in annotation and str(annotation["image_id"]) != image_id:
            raise PanopticFormatError(f"{json_file}: annotations[{index}] is for image {annotation['image_id']!r} "
                                      f"but images[{index}] is {image_id!r}")
        where = f"{json_file} (frame {image_id})"
        segments = _parse_segments(_field(annotation, "segments_info", where), categories, where,
                                   merge_duplicates=True, need_area=True)
        frames.append(PanopticFrame(image_id, Path(gt_dir) / CITYSCAPES_VPS_GT_PNG_DIR / png_name, json_file, segments))
    n = CITYSCAPES_VPS_FRAMES_PER_VIDEO
    videos = tuple(PanopticVideo(frames[i].name.split("_")[0], tuple(frames[i:i + n]))
                   for i in range(0, len(frames), n))
    return PanopticDataset(categories, videos)


def read_cityscapes_vps_predictions(pred_dir: Path, gt: PanopticDataset) -> tuple[PanopticVideo, ...]:
    """Cityscapes-VPS predictions aligned with `gt`: `pred.json` annotation i belongs to ground-truth frame i, its
    PNG is `pan_pred/<image id>.png`. An `image_id` field, when present (our writer adds it), must match."""
    json_file = Path(pred_dir) / PRED_JSON
    annotations = _field(read_json(json_file, PanopticFormatError), "annotations", str(json_file))
    gt_frames = [frame for video in gt.videos for frame in video.frames]
    if not isinstance(annotations, list) or len(annotations) != len(gt_frames):
        raise PanopticFormatError(f"{json_file}: {len(annotations)} annotations for {len(gt_frames)} ground-truth "
                                  "frames (missing or extra frames)")
    frames = iter(zip(gt_frames, annotations))
    videos = []
    for gt_video in gt.videos:
        pred_frames = []
        for gt_frame, annotation in (next(frames) for _ in gt_video.frames):
            where = f"{json_file} (frame {gt_frame.name})"
            if "image_id" in annotation and str(annotation["image_id"]) != gt_frame.name:
                raise PanopticFormatError(f"{where}: annotation is for image {annotation['image_id']!r}; predictions "
                                          "must follow the ground truth's frame order")
            segments = _parse_segments(_field(annotation, "segments_info", where), gt.categories, where,
                                       merge_duplicates=False, need_area=False)
            png = Path(pred_dir) / PRED_PNG_DIR / f"{gt_frame.name}.png"
            pred_frames.append(PanopticFrame(gt_frame.name, png, json_file, segments))
        videos.append(PanopticVideo(gt_video.name, tuple(pred_frames)))
    return tuple(videos)


# ------------------------------------------------------------------------------------------ frame lists (inference)

@dataclass(frozen=True)
class ImageEntry:
    """One image of a panoptic json's `images` (Cityscapes-VPS) or of a VIPSeg video's `images`."""

    id: Any                 # Cityscapes-VPS: video * 10000 + frame; VIPSeg: absent (None)
    file_name: str
    height: int
    width: int


def _image_entry(entry: Any, where: str, error: type[Exception], need_id: bool) -> ImageEntry:
    file_name = str(json_field(entry, "file_name", where, error))
    image_id = json_field(entry, "id", where, error) if need_id else entry.get("id")
    return ImageEntry(image_id, file_name, *json_image_size(entry, where, error))


def read_image_list(path: str | Path, error: type[Exception] = PanopticFormatError, hint: str = "") -> list[ImageEntry]:
    """The `images` of a panoptic json (Cityscapes-VPS's `im_all_info_val_city_vps.json`), in file order."""
    where = str(path)
    images = json_list(read_json(path, error, hint), "images", where, error)
    return [_image_entry(image, f"{where}: images[{i}]", error, need_id=True) for i, image in enumerate(images)]


def read_vipseg_video_list(path: str | Path, error: type[Exception] = PanopticFormatError,
                           hint: str = "") -> list[tuple[str, list[ImageEntry]]]:
    """(video id, its images) for each of a VIPSeg json's `videos` (`val.json`, `test.json`), in file order."""
    where = str(path)
    videos = json_list(read_json(path, error, hint), "videos", where, error)
    result = []
    for i, video in enumerate(videos):
        video_id = str(json_field(video, "video_id", f"{where}: videos[{i}]", error))
        entry = f"{where}: videos[{i}] ({video_id})"
        images = json_list(video, "images", entry, error)
        result.append((video_id, [_image_entry(image, f"{entry} images[{t}]", error, need_id=False)
                                  for t, image in enumerate(images)]))
    return result


# ------------------------------------------------------------------------------------------ VIPSeg


def _video_annotations(entries: Any, json_file: Path) -> dict[str, list]:
    if not isinstance(entries, list):
        raise PanopticFormatError(f"{json_file}: 'annotations' must be a list")
    by_video: dict[str, list] = {}
    for entry in entries:
        video_id = str(_field(entry, "video_id", f"{json_file} annotations"))
        if video_id in by_video:
            raise PanopticFormatError(f"{json_file}: video {video_id!r} annotated twice")
        by_video[video_id] = _field(entry, "annotations", f"{json_file} video {video_id}")
    return by_video


def read_vipseg_gt(gt_dir: Path, json_file: Path | None = None, png_dir: Path | None = None) -> PanopticDataset:
    """VIPSeg ground truth: videos in `videos` order, frame i of a video = `images[i]` + `annotations[i]`. The json
    and the PNG folder default to the official names in `gt_dir` (training reads other splits, and users' own data)."""
    json_file = Path(json_file) if json_file is not None else Path(gt_dir) / VIPSEG_GT_JSON
    png_dir = Path(png_dir) if png_dir is not None else Path(gt_dir) / VIPSEG_GT_PNG_DIR
    content = read_json(json_file, PanopticFormatError)
    categories = parse_categories(_field(content, "categories", str(json_file)), str(json_file))
    annotations = _video_annotations(_field(content, "annotations", str(json_file)), json_file)
    videos = []
    for video in _field(content, "videos", str(json_file)):
        video_id = str(_field(video, "video_id", f"{json_file} videos"))
        images = _field(video, "images", f"{json_file} video {video_id}")
        video_annotations = annotations.get(video_id)
        if video_annotations is None or len(video_annotations) != len(images):
            raise PanopticFormatError(f"{json_file}: video {video_id!r} has {len(images)} images but "
                                      f"{0 if video_annotations is None else len(video_annotations)} annotations")
        frames = []
        for image, annotation in zip(images, video_annotations):
            file_name = str(_field(image, "file_name", f"{json_file} video {video_id} images"))
            where = f"{json_file} (video {video_id}, frame {file_name})"
            if "file_name" in annotation and annotation["file_name"] != file_name:
                raise PanopticFormatError(f"{where}: annotation is for {annotation['file_name']!r}")
            segments = _parse_segments(_field(annotation, "segments_info", where), categories, where,
                                       merge_duplicates=True, need_area=True)
            frames.append(PanopticFrame(file_name, png_dir / video_id / file_name, json_file, segments))
        videos.append(PanopticVideo(video_id, tuple(frames)))
    return PanopticDataset(categories, tuple(videos))


def read_vipseg_predictions(pred_dir: Path, gt: PanopticDataset) -> tuple[PanopticVideo, ...]:
    """VIPSeg predictions aligned with `gt`: per video, annotation i belongs to ground-truth frame i and its PNG is
    `pan_pred/<video id>/<ground-truth file name>`. A `file_name` field must name the same frame (any extension)."""
    json_file = Path(pred_dir) / PRED_JSON
    annotations = _video_annotations(_field(read_json(json_file, PanopticFormatError), "annotations", str(json_file)), json_file)
    videos = []
    for gt_video in gt.videos:
        video_annotations = annotations.get(gt_video.name)
        if video_annotations is None:
            raise PanopticFormatError(f"{json_file}: no predictions for video {gt_video.name!r}")
        if len(video_annotations) != len(gt_video.frames):
            raise PanopticFormatError(f"{json_file}: video {gt_video.name!r} has {len(video_annotations)} predicted "
                                      f"frames, the ground truth {len(gt_video.frames)} (missing or extra frames)")
        frames = []
        for gt_frame, annotation in zip(gt_video.frames, video_annotations):
            where = f"{json_file} (video {gt_video.name}, frame {gt_frame.name})"
            if "file_name" in annotation and Path(str(annotation["file_name"])).stem != Path(gt_frame.name).stem:
                raise PanopticFormatError(f"{where}: annotation is for {annotation['file_name']!r}; predictions must "
                                          "follow the ground truth's frame order")
            segments = _parse_segments(_field(annotation, "segments_info", where), gt.categories, where,
                                       merge_duplicates=False, need_area=False)
            png = Path(pred_dir) / PRED_PNG_DIR / gt_video.name / gt_frame.name
            frames.append(PanopticFrame(gt_frame.name, png, json_file, segments))
        videos.append(PanopticVideo(gt_video.name, tuple(frames)))
    return tuple(videos)


# ------------------------------------------------------------------------------------------ writing


class SegmentColours:
    """Colours, and so segment ids, for the segments of one video, assigned as panopticapi's `IdGenerator` does:
    a stuff segment takes its category's colour; a thing segment takes its category's colour if that is still free,
    else a free colour within ±30 of it per channel (random, from `rng`). Black (VOID) and stuff colours are never
    given to a thing."""

    JITTER = 30
    MAX_TRIES = 100_000

    def __init__(self, categories: Mapping[int, Category], rng: np.random.Generator):
        self._categories = categories
        self._rng = rng
        self._taken = {(0, 0, 0)} | {c.color for c in categories.values() if not c.isthing}

    def next(self, category_id: int) -> tuple[int, int, int]:
        category = self._categories[category_id]
        if not category.isthing:
            return category.color
        if category.color not in self._taken:
            self._taken.add(category.color)
            return category.color
        base = np.asarray(category.color)
        for _ in range(self.MAX_TRIES):
            colour = tuple(int(c) for c in np.clip(base + self._rng.integers(-self.JITTER, self.JITTER + 1, 3), 0, 255))
            if colour not in self._taken:
                self._taken.add(colour)
                return colour
        raise RuntimeError(f"no free colour left near {category.color} for category {category_id}")


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for keys >= -1; a linear-time table when the key range is small."""
    span = int(keys.max(initial=-1)) + 2
    if span > 1 << 26:
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique, inverse.reshape(keys.shape)
    shifted = keys + 1
    unique = np.flatnonzero(np.bincount(shifted.ravel(), minlength=span))
    table = np.zeros(span, np.int64)
    table[unique] = np.arange(len(unique))
    return unique - 1, table[shifted]


class SegmentIdEncoder:
    """Segment ids of one video, assigned frame by frame as its frames stream in.

    All pixels of a stuff category form one segment (their instance ids are ignored); each (thing category,
    instance id) pair is one segment that keeps its id through the video; `ignore_label` pixels are VOID (0). Ids
    are colours (id = R + 256·G + 65536·B) picked by `SegmentColours`, in the order segments first appear (within
    a frame, by category, then instance id).
    """

    def __init__(self, categories: Mapping[int, Category], *, ignore_label: int | None = 255, seed: int = 0):
        self._known = np.asarray(sorted(categories), dtype=np.int64)
        self._thing_ids = np.asarray([c.id for c in categories.values() if c.isthing], dtype=np.int64)
        self._ignore_label = ignore_label
        self._colours = SegmentColours(categories, np.random.default_rng(seed))
        self._ids: dict[tuple[int, int], int] = {}

    def encode(self, semantic: np.ndarray, instance: np.ndarray) -> tuple[np.ndarray, list[Segment]]:
        """(H, W) category and instance ids -> (H, W) uint32 segment ids and the frame's segments by ascending id."""
        if semantic.shape != instance.shape or semantic.ndim != 2:
            raise ValueError(f"semantic and instance must both be (H, W), got {semantic.shape} and {instance.shape}")
        semantic = semantic.astype(np.int64)
        valid = semantic != self._ignore_label if self._ignore_label is not None else np.ones(semantic.shape, bool)
        unknown = np.setdiff1d(np.unique(semantic[valid]), self._known)
        if unknown.size:
            raise ValueError(f"semantic map holds ids {unknown[:10].tolist()} that are neither categories nor "
                             f"ignore_label={self._ignore_label}")
        if instance.min(initial=0) < 0:
            raise ValueError("instance ids must be >= 0")
        instance = np.where(np.isin(semantic, self._thing_ids), instance, 0).astype(np.int64)
        span = int(instance.max(initial=0)) + 1
        # one key per segment: (category, instance) for things, (category, 0) for stuff; -1 for VOID
        keys, inverse = _factorize(np.where(valid, semantic * span + instance, -1))
        areas = np.bincount(inverse.ravel(), minlength=len(keys))
        ids = np.zeros(len(keys), np.uint32)
        segments = []
        for index, key in enumerate(keys.tolist()):
            if key < 0:
                continue
            pair = divmod(key, span)
            if pair not in self._ids:
                self._ids[pair] = int(rgb2id(np.asarray(self._colours.next(pair[0]), np.uint8)))
            ids[index] = self._ids[pair]
            segments.append(Segment(int(ids[index]), pair[0], False, int(areas[index])))
        return ids[inverse], sorted(segments, key=lambda s: s.id)


def encode_panoptic_video(semantic: np.ndarray, instance: np.ndarray, categories: Mapping[int, Category], *,
                          ignore_label: int = 255, seed: int = 0) -> tuple[np.ndarray, list[list[Segment]]]:
    """Semantic and instance maps of a whole video -> segment ids (T, H, W) uint32 and, per frame, its segments in
    ascending id order (`SegmentIdEncoder` over the frames)."""
    if semantic.shape != instance.shape or semantic.ndim != 3:
        raise ValueError(f"semantic and instance must both be (T, H, W), got {semantic.shape} and {instance.shape}")
    encoder = SegmentIdEncoder(categories, ignore_label=ignore_label, seed=seed)
    frames = [encoder.encode(s, i) for s, i in zip(semantic, instance)]
    return np.stack([ids for ids, _ in frames]), [segments for _, segments in frames]


def _check_frame(ids: np.ndarray, segments: Sequence[Segment], where: str) -> None:
    if ids.ndim != 2:
        raise ValueError(f"{where}: expected one (H, W) id map, got shape {ids.shape}")
    in_png = set(np.unique(ids).tolist()) - {VOID_ID}
    if in_png != {s.id for s in segments}:
        raise ValueError(f"{where}: the id map and the segment list disagree")


def write_prediction_frame(path: Path, ids: np.ndarray, segments: Sequence[Segment], **keys: Any) -> dict:
    """Write one predicted frame's PNG (checked against its segments); return its `pred.json` entry: `keys`
    (`image_id` for Cityscapes-VPS, `file_name` for VIPSeg) and `segments_info`."""
    _check_frame(ids, segments, str(path))
    write_panoptic_png(path, ids)
    return {**keys, "segments_info": [s.to_json() for s in segments]}


def write_prediction_json(out_dir: Path, annotations: list[dict]) -> Path:
    """`<out_dir>/pred.json`: Cityscapes-VPS frame entries in ground-truth order, or VIPSeg video entries
    `{video_id, annotations: [frame entries]}`."""
    path = Path(out_dir) / PRED_JSON
    with atomic_open(path, "w") as handle:
        json.dump({"annotations": annotations}, handle)
    return path


class CityscapesVpsPredictionWriter:
    """Writes `pan_pred/<image id>.png` as frames arrive and `pred.json` on `close()`.

    Add frames in the ground truth's order (sorted image ids): the official evaluator pairs `pred.json` entries with
    ground-truth frames by position. Each entry also carries its `image_id`, which our reader checks and the official
    evaluator ignores.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        (self.out_dir / PRED_PNG_DIR).mkdir(parents=True, exist_ok=True)
        self._annotations: list[dict] = []

    def add_frame(self, image_id: str, ids: np.ndarray, segments: Sequence[Segment]) -> None:
        self._annotations.append(write_prediction_frame(self.out_dir / PRED_PNG_DIR / f"{image_id}.png", ids,
                                                        segments, image_id=image_id))

    def close(self) -> Path:
        return write_prediction_json(self.out_dir, self._annotations)


class VipsegPredictionWriter:
    """Writes `pan_pred/<video id>/<frame>.png` per video and `pred.json` on `close()`."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self._videos: list[dict] = []

    def add_video(self, video_id: str, file_names: Sequence[str], ids: np.ndarray,
                  segments: Sequence[Sequence[Segment]]) -> None:
        """file_names: the ground truth's PNG names of the frames; ids (T, H, W); segments: one list per frame."""
        if not (len(file_names) == len(ids) == len(segments)):
            raise ValueError(f"video {video_id}: {len(file_names)} file names, {len(ids)} id maps, "
                             f"{len(segments)} segment lists")
        video_dir = self.out_dir / PRED_PNG_DIR / video_id
        video_dir.mkdir(parents=True, exist_ok=True)
        frames = [write_prediction_frame(video_dir / file_name, frame_ids, frame_segments, file_name=file_name)
                  for file_name, frame_ids, frame_segments in zip(file_names, ids, segments)]
        self._videos.append({"video_id": video_id, "annotations": frames})

    def close(self) -> Path:
        return write_prediction_json(self.out_dir, self._videos)


GroundTruthFrame = tuple[str, np.ndarray, Sequence[Segment]]  # (name, (H, W) segment ids, segments)


def _categories_json(categories: Mapping[int, Category]) -> list[dict]:
    return [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color)}
            for c in categories.values()]


def write_cityscapes_vps_gt(gt_dir: Path, categories: Mapping[int, Category],
                            frames: Sequence[GroundTruthFrame]) -> None:
    """Cityscapes-VPS ground truth in the official layout (frame names are image ids; every consecutive
    CITYSCAPES_VPS_FRAMES_PER_VIDEO frames form a video). Used to build test sets and converted data."""
    gt_dir = Path(gt_dir)
    (gt_dir / CITYSCAPES_VPS_GT_PNG_DIR).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, ids, segments in frames:
        file_name = f"{image_id}_newImg8bit.png"
        write_panoptic_png(gt_dir / CITYSCAPES_VPS_GT_PNG_DIR / _cityscapes_vps_gt_png_name(file_name), ids)
        images.append({"id": image_id, "file_name": file_name, "height": ids.shape[0], "width": ids.shape[1]})
        annotations.append({"image_id": image_id, "file_name": _cityscapes_vps_gt_png_name(file_name),
                            "segments_info": [s.to_json() for s in segments]})
    content = {"images": images, "annotations": annotations, "categories": _categories_json(categories)}
    with atomic_open(gt_dir / CITYSCAPES_VPS_GT_JSON, "w") as handle:
        json.dump(content, handle)


def write_vipseg_gt(gt_dir: Path, categories: Mapping[int, Category],
                    videos: Mapping[str, Sequence[GroundTruthFrame]]) -> None:
    """VIPSeg ground truth in the official layout (frame names are PNG file names)."""
    gt_dir = Path(gt_dir)
    video_entries, annotation_entries = [], []
    for video_id, frames in videos.items():
        (gt_dir / VIPSEG_GT_PNG_DIR / video_id).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for file_name, ids, segments in frames:
            write_panoptic_png(gt_dir / VIPSEG_GT_PNG_DIR / video_id / file_name, ids)
            images.append({"id": Path(file_name).stem, "file_name": file_name,
                           "height": ids.shape[0], "width": ids.shape[1]})
            annotations.append({"image_id": Path(file_name).stem, "file_name": file_name,
                                "segments_info": [s.to_json() for s in segments]})
        video_entries.append({"video_id": video_id, "images": images})
        annotation_entries.append({"video_id": video_id, "annotations": annotations})
    content = {"videos": video_entries, "annotations": annotation_entries, "categories": _categories_json(categories)}
    with atomic_open(gt_dir / VIPSEG_GT_JSON, "w") as handle:
        json.dump(content, handle)
