"""Image panoptic datasets as pseudo-videos for pre-training (SPEC §5.2): COCO, ADE20k, Cityscapes, Mapillary, or a
dataset of your own, in the COCO-panoptic layout (`formats.coco_panoptic`).

    source = ImageClipSource("COCO", data, images_dir, pan_maps_dir, rules, settings, num_classes=133)
    sample = source.sample(rng, Task.VPS)          # also VIS, VOS, PET: pre-training draws the task per chunk

One clip is T augmented copies of one image:
- the image is decoded once (Mapillary: then resized to shortest edge 800, longest <= 1333), its panoptic PNG is
  condensed to a uint16 map of segment slots (0: unlabelled, a segment of an ignored category, or a segment id the
  json does not list; k: the json's k-th segment), and from the slots come both the semantic label and the instance;
- colour augmentation once on the RGB image (the video datasets' ±12 hue/saturation, ±25 brightness), flip p=0.5;
- per frame: a random affine about the image centre (scale 0.9-1.1, rotation ±20°, x-shear ±10°), a resize so that
  the shorter side is one of out_h + {0, 32, 64} (longer side <= 1333), then a crop to `output_size` (512 x 512):
  anywhere for each frame (COCO, ADE20k), or at the same relative position in every frame (Cityscapes, Mapillary).
  The three are one cv2.warpAffine into the crop window (the original: warp, INTER_LINEAR_EXACT / NEAREST_EXACT
  resize, crop; the same geometry with one interpolation instead of two): bilinear for the image, nearest for the
  labels, fill 0 (ignored; so is the part of a frame smaller than the crop). The slot map is the original's pair of
  condensed instance and semantic maps in one channel, so nearest interpolation picks the same source pixel for both;
  for images with more pixels than the clip, the PNG itself is warped and its ids condensed on the frames.

Targets: semantic label = the category's index in the category list (0-based), ignore where the slot is 0 (unlabelled,
ignored category, or affine fill); instance class = index + 1, one instance per thing segment (crowd segments too, as
the original); instances absent from every frame are dropped, a clip with none is unusable (drawn again). VOS / PET
(`to_object_sample`): a random frame with an instance is the reference (moved to frame 0, the others keep their
order: the frames are independent augmentations), the objects are all instances visible on it in random order, at
most `max_objects` (the original's 32 // queries per object); the loader trims a micro-batch to its smallest count.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tarvis_fast.data.augment import VIDEO_JITTER, ColourJitter
from tarvis_fast.data.clips import ClipSource, instance_sample, object_sample
from tarvis_fast.data.sample import ClipSample
from tarvis_fast.data.videos import DataError
from tarvis_fast.formats.coco_panoptic import (
    CocoPanoptic,
    PanopticCategory,
    PanopticImage,
)
from tarvis_fast.resize import min_dim_size
from tarvis_fast.tasks import Task

MAX_SLOTS = 65535  # segments of one image (the slot map is uint16)
_REDUCED_READ = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


# ============================================================================================== dataset rules

def _image_path(folder: Path, image: PanopticImage) -> Path:
    return folder / image.file_name


def _coco_thing(category: PanopticCategory) -> bool:
    return category.id <= 90


# the rules hold module-level functions, not lambdas: sources are pickled into the loader's worker processes
@dataclass(frozen=True)
class ImageDatasetRules:
    """What differs between the image datasets: which categories are things, which are ignored (dropped from the
    category list if negative, their pixels void), where an image lies, the crop, the pre-resize."""

    is_thing: Callable[[PanopticCategory], bool]
    ignored_categories: frozenset[int] = frozenset()
    image_path: Callable[[Path, PanopticImage], Path] = _image_path
    fixed_crop: bool = False                    # one crop position for every frame
    pre_resize: tuple[int, int] | None = None   # (shortest edge, longest edge cap) applied once on load


def _isthing(category: PanopticCategory) -> bool:
    if category.isthing is None:
        raise DataError(f"category {category.id} ({category.name}) has no 'isthing' flag")
    return category.isthing


def _has_instances(category: PanopticCategory) -> bool:
    return category.has_instances if category.has_instances is not None else _isthing(category)


def _cityscapes_image(folder: Path, image: PanopticImage) -> Path:
    # <images>/<city>/<city>_<seq>_<frame>_leftImg8bit.png, as the original's Cityscapes reader
    name = image.file_name.replace("gtFine_", "")
    return folder / name.split("_")[0] / name


IMAGE_DATASET_RULES: dict[str, ImageDatasetRules] = {
    "COCO": ImageDatasetRules(_coco_thing),
    "ADE20K": ImageDatasetRules(_isthing),
    "CITYSCAPES": ImageDatasetRules(_has_instances, frozenset({-1, 0}), _cityscapes_image, fixed_crop=True),
    "MAPILLARY": ImageDatasetRules(_isthing, fixed_crop=True, pre_resize=(800, 1333)),
}
DEFAULT_RULES = ImageDatasetRules(_isthing)  # a COCO-panoptic dataset of your own


@dataclass(frozen=True)
class PseudoVideoSettings:
    clip_length: int
    output_size: tuple[int, int] = (512, 512)   # training.pretrain_image_size (h, w)
    max_dim: int = 1333
    colour: ColourJitter = VIDEO_JITTER
    max_objects: int = 8                        # VOS/PET: 32 // model.num_vos_queries_per_object
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: float = 20.0                        # degrees, ±
    shear: float = 10.0                         # degrees, ±

    @property
    def min_dims(self) -> tuple[int, ...]:
        return tuple(self.output_size[0] + step for step in (0, 32, 64))


# ============================================================================================== geometry

def affine_matrix(height: int, width: int, scale: float, rotate: float, shear: float) -> np.ndarray:
    """(2, 3) forward matrix of a scale, rotation and x-shear (degrees) about the image centre (imgaug's Affine)."""
    theta, phi = np.deg2rad(rotate), np.deg2rad(shear)
    linear = scale * np.array([[np.cos(theta), -np.sin(theta + phi)], [np.sin(theta), np.cos(theta + phi)]])
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return np.concatenate([linear, (centre - linear @ centre)[:, None]], axis=1)


# ============================================================================================== the source

@dataclass(frozen=True)
class _Image:
    """One usable image: files, and per json segment (slot k + 1) its id, semantic label + 1 (0: ignored) and
    instance number (0: stuff or ignored, else 1..N)."""

    id: Any
    image: Path
    png: Path
    size: tuple[int, int]
    segment_ids: np.ndarray     # (S,) uint32, sorted
    slot_of: np.ndarray         # (S,) uint16: slot of the sorted segment ids (the json's order + 1)
    semantic: np.ndarray        # (S + 1,) int64 per slot: label (0 where ignored)
    ignore: np.ndarray          # (S + 1,) bool per slot: ignored
    instances: np.ndarray       # (S + 1,) uint16 per slot: instance 1..N, 0 none
    instance_ids: tuple[int, ...]       # segment id of each instance
    instance_classes: np.ndarray        # (N,) int64 1..C


class ImageClipSource(ClipSource):
    """Pseudo-video clips of one COCO-panoptic image dataset, for any task (see the module docstring)."""

    pseudo_video = True

    def __init__(self, name: str, task: Task, data: CocoPanoptic, images: Path, pan_maps: Path,
                 rules: ImageDatasetRules, settings: PseudoVideoSettings, num_classes: int):
        self.name, self.task, self.rules, self.settings = name, task, rules, settings
        categories = [c for c in data.categories if c.id >= 0] if rules.ignored_categories else list(data.categories)
        if len(categories) > num_classes:
            raise DataError(f"{data.path}: {len(categories)} categories, but datasets.{name}.num_classes is "
                            f"{num_classes} (a category's class is its position in the list)")
        label_of = {c.id: i for i, c in enumerate(categories) if c.id not in rules.ignored_categories}
        try:
            things = {c.id for c in categories if c.id in label_of and rules.is_thing(c)}
        except DataError as err:
            raise DataError(f"{data.path}: {err}") from None
        self.category_ids = {i + 1: c.id for i, c in enumerate(categories)}   # class 1..C -> category id
        self.category_names = {c.id: c.name for c in categories}
        self.images = tuple(image for image in (self._image(entry, images, pan_maps, label_of, things)
                                                for entry in data.images) if image is not None)
        if not self.images:
            raise DataError(f"{data.path}: no image has a segment of a thing category (empty annotation file?)")

    def _image(self, entry: PanopticImage, images: Path, pan_maps: Path, label_of: dict[int, int],
               things: set[int]) -> _Image | None:
        """The image's record; None when it has no thing segment (the original filters those out)."""
        segments = entry.segments
        if not any(s.category_id in things for s in segments):
            return None
        if len(segments) > MAX_SLOTS:
            raise DataError(f"{pan_maps / entry.png_name}: more than {MAX_SLOTS} segments in one image")
        ids = np.asarray([s.id for s in segments], np.uint32)
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"{pan_maps / entry.png_name}: a segment id is listed twice in its segments_info")
        order = np.argsort(ids)
        labels = np.zeros(len(segments) + 1, np.int64)
        instances = np.zeros(len(segments) + 1, np.uint16)
        instance_ids, classes = [], []
        for slot, segment in enumerate(segments, 1):
            if segment.category_id not in label_of:   # an ignored category: void
                continue
            labels[slot] = label_of[segment.category_id] + 1
            if segment.category_id in things:
                instance_ids.append(segment.id)
                classes.append(label_of[segment.category_id] + 1)
                instances[slot] = len(instance_ids)
        return _Image(entry.id, self.rules.image_path(images, entry), pan_maps / entry.png_name,
                      (entry.height, entry.width), ids[order], (order + 1).astype(np.uint16),
                      np.maximum(labels - 1, 0), labels == 0, instances,
                      tuple(instance_ids), np.asarray(classes, np.int64))

    # ------------------------------------------------------------------------------------------ loading

    def load(self, image: _Image) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB image and (H, W, 3) uint8 panoptic PNG as cv2 reads it (BGR-encoded ids), after the
        dataset's pre-resize (nearest for the PNG). A JPEG that the pre-resize shrinks at least twofold is decoded at
        1/2, 1/4 or 1/8 size (libjpeg's scaled decoding, several times cheaper), never below the resize's size."""
        target, reduce = None, 1
        if self.rules.pre_resize is not None:
            target = min_dim_size(*image.size, *self.rules.pre_resize)
            if image.image.suffix.lower() in (".jpg", ".jpeg"):
                while reduce < 8 and min(image.size) // (2 * reduce) >= min(target):
                    reduce *= 2
        bgr = cv2.imread(str(image.image), _REDUCED_READ[reduce])
        if bgr is None:
            raise DataError(f"{image.image}: image not found or not readable")
        png = cv2.imread(str(image.png), cv2.IMREAD_COLOR)
        if png is None:
            raise DataError(f"{image.png}: panoptic PNG not found or not readable")
        decoded = tuple(-(-side // reduce) for side in image.size)
        if bgr.shape[:2] != decoded or png.shape[:2] != image.size:
            raise DataError(f"{image.png}: size {png.shape[0]}x{png.shape[1]} (HxW), its image {image.image} "
                            f"{bgr.shape[0] * reduce}x{bgr.shape[1] * reduce}, the json {image.size[0]}x"
                            f"{image.size[1]}: they differ")
        if target is not None:
            h, w = target
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
            png = cv2.resize(png, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), png

    # ------------------------------------------------------------------------------------------ sampling

    def augment(self, rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, bool, list[dict[str, Any]]]:
        """(T, h, w, 3) uint8 RGB frames and (T, h, w, ...) label maps (`labels` (H, W, ...) warped with nearest) of
        one pseudo-video, whether it was flipped, and each frame's parameters (affine, resized size, crop corner).

        The original warps the whole image, resizes it and crops (two interpolations); here each frame is one
        cv2.warpAffine straight into the crop window with the composed matrix: the same geometry, one interpolation
        (bilinear for the image, nearest for the labels), and only the kept pixels computed. Colour augmentation is
        applied once to the image, or to the frames when they have fewer pixels (it is pixel-wise)."""
        s = self.settings
        jitter = s.colour.draw(rng)
        height, width = labels.shape[:2]
        (ch, cw), length = s.output_size, s.clip_length
        jitter_frames = height * width > length * ch * cw
        if not jitter_frames:
            rgb = jitter(rgb[None])[0]
        flipped = bool(rng.random() < 0.5)
        if flipped:
            rgb, labels = np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(labels[:, ::-1])
        fixed = rng.random(2) if self.rules.fixed_crop else None
        frames, maps, params = [], [], []
        for _ in range(length):
            scale = float(rng.uniform(*s.scale))
            rotate = float(rng.uniform(-s.rotate, s.rotate))
            shear = float(rng.uniform(-s.shear, s.shear))
            min_dim = s.min_dims[int(rng.integers(len(s.min_dims)))]
            h, w = min_dim_size(height, width, min_dim, s.max_dim)
            room = (max(h - ch, 0), max(w - cw, 0))
            if fixed is not None:
                corner = (round(float(fixed[0]) * room[0]), round(float(fixed[1]) * room[1]))
            else:
                corner = (int(rng.integers(room[0] + 1)), int(rng.integers(room[1] + 1)))
            matrix = frame_matrix((height, width), affine_matrix(height, width, scale, rotate, shear), (h, w), corner)
            frames.append(cv2.warpAffine(rgb, matrix, (cw, ch), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            maps.append(cv2.warpAffine(labels, matrix, (cw, ch), flags=cv2.INTER_NEAREST,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            params.append({"scale": scale, "rotate": rotate, "shear": shear, "resized": [h, w], "crop": corner})
        frames_array = np.stack(frames)
        return jitter(frames_array) if jitter_frames else frames_array, np.stack(maps), flipped, params

    def _draw(self, rng: np.random.Generator, task: Task, num_objects: int | None) -> ClipSample | None:
        image = self.images[int(rng.integers(len(self.images)))]
        rgb, png = self.load(image)
        (ch, cw), length = self.settings.output_size, self.settings.clip_length
        # segment ids -> slots on whichever is smaller: the image, or the frames (the PNG warped as it is)
        on_frames = png.shape[0] * png.shape[1] > length * ch * cw
        labels = png if on_frames else condense(png, image.segment_ids, image.slot_of)
        frames, maps, flipped, params = self.augment(rgb, labels, rng)
        if on_frames:
            maps = condense(maps, image.segment_ids, image.slot_of)
        meta = {"source": str(image.id), "frames": [0] * len(frames), "flipped": flipped,
                "source_size": list(png.shape[:2]), "augment": params}
        instances = image.instances[maps]                       # (T, h, w) 1..N, 0 none
        present = np.flatnonzero(np.bincount(instances.ravel(), minlength=len(image.instance_ids) + 1)[1:])
        if not len(present):
            return None
        masks = instances[None] == (present + 1).astype(np.uint16).reshape(-1, 1, 1, 1)   # (N', T, h, w)
        if task.guided_by_objects:
            return to_object_sample(self.name, task, frames, masks, [image.instance_ids[i] for i in present], meta,
                                    rng, self.settings.max_objects if num_objects is None else num_objects)
        classes = image.instance_classes[present]
        meta.update(instance_ids=[image.instance_ids[i] for i in present],
                    category_ids=[self.category_ids[int(c)] for c in classes])
        labels = None
        if task is Task.VPS:
            labels = (image.semantic[maps], image.ignore[maps])
        elif task is not Task.VIS:
            raise ValueError(f"{self.name}: unknown task {task}")
        return instance_sample(self.name, task, frames[..., ::-1], masks, classes, labels, meta)


def frame_matrix(size: tuple[int, int], affine: np.ndarray, resized: tuple[int, int],
                 corner: tuple[int, int]) -> np.ndarray:
    """(2, 3) matrix from source pixels to a frame's crop window: `affine` on the (H, W) = `size` image, then the
    resize to `resized` (pixel centres: x' = (x + 0.5) w / W - 0.5), then the crop at `corner` (y, x)."""
    (height, width), (h, w), (y, x) = size, resized, corner
    kx, ky = w / width, h / height
    resize = np.array([[kx, 0.0, 0.5 * kx - 0.5 - x], [0.0, ky, 0.5 * ky - 0.5 - y], [0.0, 0.0, 1.0]])
    return (resize @ np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]


def condense(png_bgr: np.ndarray, segment_ids: np.ndarray, slot_of: np.ndarray) -> np.ndarray:
    """(...) uint16 slots of panoptic PNG pixels as cv2 reads them (..., 3) BGR: the slot of each pixel's segment id
    (R + 256·G + 65536·B), 0 where the id is not among `segment_ids` (sorted) or is 0."""
    ids = png_bgr[..., 2].astype(np.uint32)
    ids |= png_bgr[..., 1].astype(np.uint32) << 8
    ids |= png_bgr[..., 0].astype(np.uint32) << 16
    position = np.searchsorted(segment_ids, ids)
    np.minimum(position, len(segment_ids) - 1, out=position)
    found = segment_ids[position] == ids
    return np.where(found, slot_of[position], 0).astype(np.uint16)


def to_object_sample(dataset: str, task: Task, frames: np.ndarray, masks: np.ndarray, ids: Sequence[int],
                     meta: dict[str, Any], rng: np.random.Generator, max_objects: int) -> ClipSample | None:
    """A VOS/PET sample from a pseudo-video's RGB frames (T, h, w, 3) and instance masks (N, T, h, w): a random frame
    holding an instance becomes frame 0, its visible instances (random order, at most `max_objects`) the objects."""
    visible = masks.any(axis=(2, 3))                 # (N, T)
    candidates = np.flatnonzero(visible.any(0))
    if not len(candidates):
        return None
    ref = int(rng.choice(candidates))
    order = [ref, *(t for t in range(frames.shape[0]) if t != ref)]
    objects = rng.permutation(np.flatnonzero(visible[:, ref]))[:max_objects]
    meta = {**meta, "frames": [meta["frames"][t] for t in order], "order": order,
            "instance_ids": [int(ids[i]) for i in objects]}
    return object_sample(dataset, task, frames[order][..., ::-1], masks[objects][:, order], meta)


def trim_objects(sample: ClipSample, count: int) -> ClipSample:
    """The sample with its first `count` objects (VOS/PET; pseudo-video objects come in random order)."""
    if sample.num_objects == count:
        return sample
    meta = {**sample.meta, "instance_ids": list(sample.meta.get("instance_ids", []))[:count]}
    return ClipSample(sample.dataset, sample.task, sample.images, sample.masks[:count],
                      points=None if sample.points is None else sample.points[:count], meta=meta)

