"""Procedural videos for the bundled demo and for tests, written in the benchmarks' real on-disk formats.

    videos = generate_videos(seed=0, count=8, num_frames=12, size=(96, 128))
    write_ytvis(root / "ytvis", videos, "train")      # YouTube-VIS json + frames (VIS)
    write_davis(root / "davis", videos, "val")        # DAVIS-2017 folders: JPEGImages, Annotations, ImageSets (VOS)
    write_vipseg(root / "vipseg", videos, "val")      # VIPSeg: images, panomasksRGB, its json files (VPS)
    write_burst(root / "burst", videos, "val")        # BURST: all_classes.json, first_frame_annotations.json (PET)

A scene is a static background of three "stuff" classes (sky, a wall, the ground: told apart by texture) and a few
"thing" objects of three classes (disc, box, triangle: told apart by shape and texture, each object in its own random
colour) that move, grow or shrink, occlude one another and may enter or leave the frame. Everything is drawn from one
seeded generator, so a seed always gives the same videos and files. The classes, their order and their colours are
the packaged vocabularies DEMO_VPS (all six; `tarvis_fast/vocabularies.json`) and DEMO_VIS (the things), the rows
the demo's benchmarks read and write with: the class index (0-based) is a position in `CLASSES`, and VIS files
number the things 1.. in `THING_CLASSES` order, as YouTube-VIS numbers its categories.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from tarvis_fast.data.points import mask_to_point
from tarvis_fast.datasets import vocabulary
from tarvis_fast.formats import burst, panoptic, ytvis
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.davis import write_label_png
from tarvis_fast.formats.panoptic import Category
from tarvis_fast.formats.rle import encode_rle

_VOCABULARY = vocabulary("DEMO_VPS")
CLASSES = _VOCABULARY.names
THING_CLASSES = tuple(CLASSES[i] for i in _VOCABULARY.thing_classes)
STUFF_CLASSES = tuple(name for name in CLASSES if name not in THING_CLASSES)
# The drawing below knows each class by its name (its texture, its shape) and numbers the stuff regions by their
# class index: sky 0, wall 1, ground 2 (tests/data/test_synthetic.py checks the vocabulary says so).
JPEG_QUALITY = 95
# LVIS ids for BURST's evaluator, which groups classes into "common" (4, 13) and "uncommon" (1); every split
# needs one of each, so the three thing classes take one uncommon and two common ids.
BURST_CATEGORY_IDS = {"disc": 4, "box": 1, "triangle": 13}
# Objects that must be visible at start show at least this share of their area in frame 0 (the others may hide
# them partly); layouts that fail are drawn again, up to MAX_LAYOUT_TRIES times.
MIN_SHOWN_AT_START = 0.5
MAX_LAYOUT_TRIES = 100


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video.

    frames:        (T, H, W, 3) uint8 RGB
    semantic:      (T, H, W) int64 class index into CLASSES of every pixel
    instance:      (T, H, W) int64 object id (1..), 0 where no thing is
    object_classes: object id -> class index (a thing), for every object visible in at least one frame
    """

    name: str
    frames: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    object_classes: dict[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    def frame_names(self) -> list[str]:
        return [f"{t:05d}" for t in range(len(self.frames))]

    def object_masks(self, object_id: int) -> np.ndarray:
        """(T, H, W) bool masks of one object."""
        return self.instance == object_id


def categories() -> dict[int, Category]:
    """CLASSES as panoptic categories (id = class index), with DEMO_VPS's colours."""
    return _VOCABULARY.categories()


# ============================================================================================== drawing

def _texture(kind: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """A [0, 1] pattern over texture coordinates (u, v) in pixels: what tells classes of one shape family apart."""
    if kind in ("disc", "ground"):     # stripes
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * v / period))
    if kind in ("box", "wall"):        # checks (the wall's are bricks: wider than tall)
        wide = 2.0 if kind == "wall" else 1.0
        return ((np.floor(u / (period * wide)) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "triangle":             # dots
        return ((np.hypot((u % period) - period / 2, (v % period) - period / 2) < period / 3)).astype(np.float32)
    return 0.5 + 0.5 * np.cos(2 * np.pi * v / (period * 8))  # sky: a slow vertical gradient


def _shape_mask(kind: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, radius: float,
                angle: float) -> np.ndarray:
    """(H, W) bool: a disc, a square or a triangle of circumradius `radius`, centred at (cx, cy), rotated."""
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == "disc":
        return u * u + v * v <= radius * radius
    if kind == "box":
        half = radius / np.sqrt(2)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # an equilateral triangle: inside all three half-planes of its edges
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        theta = 2 * np.pi * k / 3 + np.pi / 2  # (u, v) are already rotated by `angle`
        inside &= u * np.cos(theta) + v * np.sin(theta) <= radius / 2
    return inside


@dataclass(frozen=True)
class _Object:
    object_id: int
    kind: str
    colour: np.ndarray      # (3,) float RGB
    start: np.ndarray       # (2,) centre (x, y) at frame 0
    velocity: np.ndarray    # (2,) pixels per frame
    radius: float
    growth: float           # radius factor per frame
    angle: float
    spin: float

    def pose(self, t: int) -> tuple[np.ndarray, float, float]:
        """Centre (x, y), radius and angle in frame t."""
        return self.start + self.velocity * t, self.radius * self.growth ** t, self.angle + self.spin * t


def _objects(rng: np.random.Generator, count: int, height: int, width: int, num_frames: int,
             visible_at_start: bool) -> list[_Object]:
    objects = []
    scale = min(height, width)
    for object_id in range(1, count + 1):
        radius = float(rng.uniform(0.12, 0.22) * scale)
        start = rng.uniform([radius, radius], [width - radius, height - radius])
        velocity = rng.uniform(-1, 1, 2) * scale / max(num_frames, 1) * 0.6
        if not visible_at_start and rng.random() < 0.3:  # enters: starts beyond an edge, heads inwards
            edge = int(rng.integers(0, 2))
            start[edge] = -radius * 1.2 if rng.random() < 0.5 else (width, height)[edge] + radius * 1.2
            velocity[edge] = np.sign((width, height)[edge] / 2 - start[edge]) * scale / max(num_frames, 1) * 1.2
        objects.append(_Object(
            object_id=object_id, kind=THING_CLASSES[int(rng.integers(0, len(THING_CLASSES)))],
            colour=rng.uniform(40, 230, 3), start=start, velocity=velocity, radius=radius,
            growth=float(rng.uniform(0.97, 1.03)), angle=float(rng.uniform(0, np.pi)),
            spin=float(rng.uniform(-0.05, 0.05)),
        ))
    return objects


def _shown_at_start(objects: list[_Object], xx: np.ndarray, yy: np.ndarray) -> bool:
    """Whether every object shows at least MIN_SHOWN_AT_START of its area in frame 0, where later objects occlude
    earlier ones: a reference mask (VOS) or point (PET) needs the object in view, not hidden behind another."""
    covered = np.zeros(xx.shape, bool)
    for obj in reversed(objects):  # the top one first
        (cx, cy), radius, angle = obj.pose(0)
        mask = _shape_mask(obj.kind, xx, yy, cx, cy, radius, angle)
        if not mask.any() or np.count_nonzero(mask & ~covered) < MIN_SHOWN_AT_START * np.count_nonzero(mask):
            return False
        covered |= mask
    return True


def generate_video(rng: np.random.Generator, name: str, num_frames: int, size: tuple[int, int], *,
                   num_objects: tuple[int, int] = (1, 4), visible_at_start: bool = False) -> SyntheticVideo:
    """One video of `num_frames` frames of `size` (H, W) with between num_objects[0] and num_objects[1] objects.

    visible_at_start: every object is inside frame 0 and shows at least half of itself there, other objects hiding
        the rest (what DAVIS-style first-frame references need).
    """
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Background: sky above a wavy horizon, ground below, and (often) a wall standing on the horizon.
    horizon = height * rng.uniform(0.35, 0.6) + height * 0.05 * np.sin(xx[0] / width * 2 * np.pi * rng.uniform(0.5, 2)
                                                                       + rng.uniform(0, 2 * np.pi))
    stuff = np.where(yy < horizon[None, :], 0, 2)
    if rng.random() < 0.7:
        x0, x1 = sorted(rng.uniform(0, width, 2))
        top = float(rng.uniform(0.1, 0.3) * height)
        stuff[(xx >= x0) & (xx < x1) & (yy >= top) & (yy < horizon[None, :])] = 1
    stuff_colours = [rng.uniform(60, 220, 3) for _ in STUFF_CLASSES]
    period = max(4.0, min(height, width) / 12)
    background = np.zeros((height, width, 3), np.float32)
    for index, kind in enumerate(STUFF_CLASSES):
        region = stuff == index
        pattern = _texture(kind, xx, yy, period)[region]
        background[region] = stuff_colours[index] * (0.6 + 0.4 * pattern[:, None])

    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    objects = _objects(rng, count, height, width, num_frames, visible_at_start)
    for _ in range(MAX_LAYOUT_TRIES):
        if not visible_at_start or _shown_at_start(objects, xx, yy):
            break
        objects = _objects(rng, count, height, width, num_frames, visible_at_start)
    else:
        raise ValueError(f"{name}: no layout of {count} objects in {height}x{width} leaves each one in view in frame 0")
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    semantic = np.empty((num_frames, height, width), np.int64)
    instance = np.zeros((num_frames, height, width), np.int64)
    for t in range(num_frames):
        image = background.copy()
        semantic[t] = stuff
        for obj in objects:  # later objects occlude earlier ones
            (cx, cy), radius, angle = obj.pose(t)
            mask = _shape_mask(obj.kind, xx, yy, cx, cy, radius, angle)
            if not mask.any():
                continue
            c, s = np.cos(angle), np.sin(angle)
            u, v = c * (xx - cx) + s * (yy - cy), -s * (xx - cx) + c * (yy - cy)  # the texture moves with the object
            pattern = _texture(obj.kind, u[mask], v[mask], period * radius / obj.radius)
            image[mask] = obj.colour * (0.55 + 0.45 * pattern[:, None])
            semantic[t][mask] = CLASSES.index(obj.kind)
            instance[t][mask] = obj.object_id
        noise = rng.normal(0, 4, image.shape)
        frames[t] = np.clip(image + noise, 0, 255).astype(np.uint8)
    visible = {int(i) for i in np.unique(instance) if i}
    object_classes = {obj.object_id: CLASSES.index(obj.kind) for obj in objects if obj.object_id in visible}
    return SyntheticVideo(name, frames, semantic, instance, object_classes)


def generate_videos(seed: int, count: int, num_frames: int, size: tuple[int, int], *, prefix: str = "video",
                    num_objects: tuple[int, int] = (1, 4), visible_at_start: bool = False) -> list[SyntheticVideo]:
    """`count` videos named `<prefix>_000`, ... from one seed."""
    rng = np.random.default_rng(seed)
    return [generate_video(rng, f"{prefix}_{i:03d}", num_frames, size, num_objects=num_objects,
                           visible_at_start=visible_at_start) for i in range(count)]


# ============================================================================================== writers

def _write_jpegs(folder: Path, video: SyntheticVideo) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in zip(video.frame_names(), video.frames):
        path = folder / f"{name}.jpg"
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")
        with atomic_open(path, "wb") as handle:
            handle.write(data.tobytes())
        paths.append(path)
    return paths


def _dump(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        json.dump(content, handle)


def write_ytvis(root: Path, videos: Sequence[SyntheticVideo], split: str) -> Path:
    """YouTube-VIS 2021 layout: `root/JPEGImages/<video>/<frame>.jpg` and `root/<split>.json`, a ground-truth json
    (videos, categories = the thing classes with ids 1.., annotations with per-frame RLE, areas and boxes), which
    also serves as the inference list of its videos. Returns the json's path."""
    root = Path(root)
    json_videos, annotations = [], []
    for video_id, video in enumerate(videos, 1):
        _write_jpegs(root / "JPEGImages" / video.name, video)
        height, width = video.size
        json_videos.append({"id": video_id, "height": height, "width": width, "length": len(video.frames),
                            "file_names": [f"{video.name}/{n}.jpg" for n in video.frame_names()]})
        for object_id, class_index in sorted(video.object_classes.items()):
            masks = video.object_masks(object_id)
            segmentations = [ytvis.json_rle(encode_rle(m)) if m.any() else None for m in masks]
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id, "iscrowd": 0,
                "category_id": THING_CLASSES.index(CLASSES[class_index]) + 1,
                "segmentations": segmentations, "areas": [int(m.sum()) if m.any() else None for m in masks],
                "bboxes": [_bbox(m) for m in masks], "height": height, "width": width, "length": len(masks),
            })
    categories_json = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(THING_CLASSES)]
    path = root / f"{split}.json"
    _dump(path, {"videos": json_videos, "categories": categories_json, "annotations": annotations})
    return path


def _bbox(mask: np.ndarray) -> list[int] | None:
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)]


def write_davis(root: Path, videos: Sequence[SyntheticVideo], split: str) -> Path:
    """DAVIS-2017 layout: `root/JPEGImages/480p/<seq>/%05d.jpg`, `root/Annotations/480p/<seq>/%05d.png` (palette
    PNGs of object ids for every frame) and `root/ImageSets/2017/<split>.txt`. DAVIS counts a sequence's objects
    in its first annotation, so every object must be visible in frame 0 (`generate_videos(visible_at_start=True)`).
    Returns the root."""
    root = Path(root)
    for video in videos:
        missing = set(video.object_classes) - set(np.unique(video.instance[0]).tolist())
        if missing:
            raise ValueError(f"{video.name}: objects {sorted(missing)} are not visible in frame 0, which DAVIS needs")
        _write_jpegs(root / "JPEGImages" / "480p" / video.name, video)
        folder = root / "Annotations" / "480p" / video.name
        folder.mkdir(parents=True, exist_ok=True)
        for name, labels in zip(video.frame_names(), video.instance):
            write_label_png(folder / f"{name}.png", labels.astype(np.uint8))
    image_set = root / "ImageSets" / "2017" / f"{split}.txt"
    image_set.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(image_set, "w") as handle:
        handle.write("".join(f"{video.name}\n" for video in videos))
    return root


def write_vipseg(root: Path, videos: Sequence[SyntheticVideo], split: str) -> Path:
    """VIPSeg layout, one split per root: `root/images/<video>/<frame>.jpg`, the panoptic ground truth
    (`panomasksRGB/<video>/<frame>.png` and `panoptic_gt_VIPSeg_val.json`, the names the VPQ/STQ metrics read) and
    `root/<split>.json` (the inference list: `videos[].images[].{file_name, height, width}`). Returns the root."""
    root = Path(root)
    cats = categories()
    gt_videos, listing = {}, []
    for seed, video in enumerate(videos):
        _write_jpegs(root / "images" / video.name, video)
        ids, segments = panoptic.encode_panoptic_video(video.semantic, video.instance, cats, seed=seed)
        names = [f"{n}.png" for n in video.frame_names()]
        gt_videos[video.name] = list(zip(names, ids, segments))
        height, width = video.size
        listing.append({"video_id": video.name,
                        "images": [{"file_name": n, "height": height, "width": width} for n in names]})
    panoptic.write_vipseg_gt(root, cats, gt_videos)
    _dump(root / f"{split}.json", {"videos": listing})
    return root


def write_burst(root: Path, videos: Sequence[SyntheticVideo], split: str, *, annotate_every: int = 1,
                fps: int = 30) -> Path:
    """BURST layout: `root/frames/<dataset>/<seq>/<frame>.jpg`, `root/all_classes.json` (ground truth on every
    `annotate_every`-th frame) and `root/first_frame_annotations.json` (each track's first annotated mask, box and
    point: the PET input, a pixel inside the mask's interior). Returns the root."""
    root = Path(root)
    sequences, first_frames = [], []
    for seq_id, video in enumerate(videos, 1):
        dataset = "SYNTHETIC"
        _write_jpegs(root / "frames" / dataset / video.name, video)
        all_paths = [f"{n}.jpg" for n in video.frame_names()]
        annotated = list(range(0, len(all_paths), annotate_every))
        frames, first, seen = [], [], set()
        for t in annotated:
            frame, first_frame = {}, {}
            for object_id in sorted(video.object_classes):
                mask = video.instance[t] == object_id
                if not mask.any():
                    continue
                rle = encode_rle(mask)["counts"]
                frame[str(object_id)] = {"rle": rle, "is_gt": True}
                if object_id not in seen:
                    seen.add(object_id)
                    y, x = mask_to_point(torch.from_numpy(mask))
                    bx, by, bw, bh = _bbox(mask)
                    first_frame[str(object_id)] = {"rle": rle, "is_gt": True, "point": {"x": x, "y": y},
                                                   "bbox": [bx, by, bw, bh]}
            frames.append(frame)
            first.append(first_frame)
        height, width = video.size
        sequence = {"id": seq_id, "dataset": dataset, "seq_name": video.name, "width": width, "height": height,
                    "fps": fps, "all_image_paths": all_paths,
                    "annotated_image_paths": [all_paths[t] for t in annotated],
                    "neg_category_ids": [], "not_exhaustive_category_ids": [],
                    "track_category_ids": {str(i): BURST_CATEGORY_IDS[CLASSES[c]]
                                           for i, c in sorted(video.object_classes.items())}}
        sequences.append(sequence | {"segmentations": frames})
        first_frames.append(sequence | {"segmentations": first})
    burst.write_burst_annotations(root / "all_classes.json", split, sequences)
    burst.write_burst_annotations(root / "first_frame_annotations.json", split, first_frames)
    return root
