"""Tiny training datasets written in the official layouts, from one procedural scene per video.

A scene is T frames of noise with rectangles moving right: instance k (1-based) of class `CLASSES[k]`, instance 3
absent from the first two frames; the label map has stuff label 0 above row H/2, stuff 1 below, void in the bottom
rows, and each instance's class - 1 under it (labels are 0-based, instance classes 1-based).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tarvis_fast.formats import burst, panoptic
from tarvis_fast.formats.davis import write_label_png
from tarvis_fast.formats.rle import encode_rle

CLASSES = {1: 3, 2: 4, 3: 3}   # instance id -> class (1-based); stuff labels are 0 and 1
NUM_CLASSES = 5
VOID_ROWS = 4


@dataclass(frozen=True)
class Scene:
    name: str
    frames: np.ndarray     # (T, H, W, 3) uint8 BGR
    instance: np.ndarray   # (T, H, W) int64, 0 = none
    labels: np.ndarray     # (T, H, W) int64 0-based, -1 = void

    def masks(self, ids: list[int]) -> np.ndarray:
        """(N, T, H, W) bool."""
        return np.stack([self.instance == i for i in ids])


def make_scene(name: str, seed: int, frames: int = 8, size: tuple[int, int] = (60, 80)) -> Scene:
    rng = np.random.default_rng(seed)
    h, w = size
    images = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
    instance = np.zeros((frames, h, w), np.int64)
    for t in range(frames):
        for k in CLASSES:
            if k == 3 and t < 2:
                continue
            y, x = 8 + 14 * (k - 1), 4 + 22 * (k - 1) + t
            instance[t, y:y + 12, x:x + 16] = k
    labels = np.where(np.arange(h)[None, :, None] < h // 2, 0, 1) * np.ones((frames, 1, w), np.int64)
    labels[:, h - VOID_ROWS:] = -1
    for k, cls in CLASSES.items():
        labels[instance == k] = cls - 1
    return Scene(name, images, instance, labels)


def make_scenes(count: int = 2, **kwargs) -> list[Scene]:
    return [make_scene(f"vid{i}", seed=i, **kwargs) for i in range(count)]


def _write_frames(folder: Path, scene: Scene, suffix: str = ".jpg") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{t:05d}" for t in range(len(scene.frames))]
    for name, frame in zip(names, scene.frames):
        cv2.imwrite(str(folder / f"{name}{suffix}"), frame)
    return names


def _counts(mask: np.ndarray) -> str:
    return encode_rle(mask)["counts"]


def write_video_json(root: Path, scenes: list[Scene], *, semantic: bool) -> Path:
    """The original's generic json; semantic: KITTI-STEP style (categories 0-based, labels with 255 void)."""
    sequences = []
    for scene in scenes:
        names = _write_frames(root / "images" / scene.name, scene)
        seq = {"id": scene.name, "height": scene.frames.shape[1], "width": scene.frames.shape[2],
               "image_paths": [f"{scene.name}/{n}.jpg" for n in names],
               "categories": {str(k): (c - 1 if semantic else c) for k, c in CLASSES.items()},
               "segmentations": [{str(k): _counts(frame == k) for k in CLASSES if (frame == k).any()}
                                 for frame in scene.instance]}
        if semantic:
            seq["semantic_segmentations"] = [
                {str(255 if v < 0 else v): _counts(frame == v) for v in np.unique(frame)} for frame in scene.labels]
        sequences.append(seq)
    labels = {str(c): f"class{c}" for c in range(NUM_CLASSES + 1)}
    path = root / "annotations.json"
    path.write_text(json.dumps({"meta": {"category_labels": labels}, "sequences": sequences}))
    return path


def write_ytvis(root: Path, scenes: list[Scene]) -> Path:
    videos, annotations = [], []
    for vid, scene in enumerate(scenes, 1):
        names = _write_frames(root / "JPEGImages" / scene.name, scene)
        h, w = scene.frames.shape[1:3]
        videos.append({"id": vid, "height": h, "width": w, "length": len(names),
                       "file_names": [f"{scene.name}/{n}.jpg" for n in names]})
        for k, cls in CLASSES.items():
            masks = scene.instance == k
            annotations.append({"id": len(annotations) + 1, "video_id": vid, "category_id": cls * 10, "iscrowd": 0,
                                "segmentations": [encode_rle(m) if m.any() else None for m in masks],
                                "areas": [int(m.sum()) or None for m in masks]})
    categories = [{"id": c * 10, "name": f"class{c}"} for c in range(1, NUM_CLASSES + 1)]
    path = root / "train.json"
    path.write_text(json.dumps({"videos": videos, "categories": categories, "annotations": annotations}))
    return path


def write_davis_folder(root: Path, scenes: list[Scene]) -> tuple[Path, Path]:
    for scene in scenes:
        _write_frames(root / "JPEGImages" / scene.name, scene)
        folder = root / "Annotations" / scene.name
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(scene.instance):
            write_label_png(folder / f"{t:05d}.png", frame.astype(np.uint8))
    return root / "JPEGImages", root / "Annotations"


def vipseg_values(scene: Scene) -> np.ndarray:
    """VIPSeg training PNG values: things (class)*100 + k, stuff label + 1, void 0."""
    values = np.where(scene.labels >= 0, scene.labels + 1, 0)
    for k, cls in CLASSES.items():
        values[scene.instance == k] = cls * 100 + k
    return values


def write_vipseg(root: Path, scenes: list[Scene]) -> tuple[Path, Path, Path]:
    sequences = []
    for scene in scenes:
        names = _write_frames(root / "images" / scene.name, scene)
        folder = root / "panoptic_masks" / scene.name
        folder.mkdir(parents=True, exist_ok=True)
        values = vipseg_values(scene)
        for name, frame in zip(names, values):
            cv2.imwrite(str(folder / f"{name}.png"), frame.astype(np.uint16))
        ids = [cls * 100 + k for k, cls in CLASSES.items()]
        sequences.append({"name": scene.name, "filenames": names, "instance_ids": ids, "stuff_classes": [0, 1],
                          "frame_instance_occupancy": [[int(v) for v in ids if (f == v).any()] for f in values]})
    categories = [{"id": c, "name": f"class{c}"} for c in range(NUM_CLASSES)]
    path = root / "video_info.json"
    path.write_text(json.dumps({"sequences": sequences, "categories": categories}))
    return root / "images", path, root / "panoptic_masks"


def write_panoptic_video(root: Path, scenes: list[Scene]) -> tuple[Path, Path]:
    """VIPSeg-style panoptic json + RGB PNGs: category id c + 100 for label c; segment id = the VIPSeg value."""
    categories = {c + 100: panoptic.Category(c + 100, f"class{c}", c + 1 in CLASSES.values(), (c, c, c))
                  for c in range(NUM_CLASSES)}
    videos = {}
    for scene in scenes:
        names = _write_frames(root / "images" / scene.name, scene)
        values = vipseg_values(scene)
        frames = []
        for name, frame in zip(names, values):
            segments = [panoptic.Segment(int(v), (int(v) // 100 - 1 if v >= 100 else int(v) - 1) + 100, False,
                                         int((frame == v).sum())) for v in np.unique(frame) if v]
            frames.append((f"{name}.png", frame, segments))
        videos[scene.name] = frames
    panoptic.write_vipseg_gt(root / "gt", categories, videos)
    return root / "images", root / "gt" / panoptic.VIPSEG_GT_JSON


def write_burst(root: Path, scenes: list[Scene]) -> Path:
    sequences = []
    for i, scene in enumerate(scenes, 1):
        names = _write_frames(root / "frames" / "DS" / scene.name, scene)
        h, w = scene.frames.shape[1:3]
        sequences.append({
            "id": i, "dataset": "DS", "seq_name": scene.name, "height": h, "width": w, "fps": 30,
            "all_image_paths": [f"{n}.jpg" for n in names], "annotated_image_paths": [f"{n}.jpg" for n in names],
            "neg_category_ids": [], "not_exhaustive_category_ids": [],
            "track_category_ids": {str(k): 7 for k in CLASSES},
            "segmentations": [{str(k): {"rle": _counts(frame == k), "is_gt": True} for k in CLASSES
                               if (frame == k).any()} for frame in scene.instance]})
    path = root / "burst.json"
    burst.write_burst_annotations(path, "train", sequences)
    return path


def own_datasets(root: Path, scenes: list[Scene], min_dims: list[int]) -> dict[str, dict]:
    """The `datasets:` entries of a config training on `scenes` written in three own-data layouts under `root`:
    MY_VOS (DAVIS folders), MY_VIS (YouTube-VIS json) and MY_VPS (VIPSeg), resized to `min_dims`."""
    davis_images, davis_annotations = write_davis_folder(root / "davis", scenes)
    vipseg_images, vipseg_info, vipseg_masks = write_vipseg(root / "vipseg", scenes)
    resize = {"mode": "min_dim", "min_dims": min_dims, "max_dim": 1333}
    return {
        "MY_VOS": {"type": "vos", "training": {"layout": "davis_folder", "images": str(davis_images),
                                               "annotations": str(davis_annotations), "image_resize": resize}},
        "MY_VIS": {"type": "instance_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "ytvis", "images": str(root / "ytvis" / "JPEGImages"),
            "annotations": str(write_ytvis(root / "ytvis", scenes)), "image_resize": resize}},
        "MY_VPS": {"type": "panoptic_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "vipseg", "images": str(vipseg_images), "annotations": str(vipseg_info),
            "masks": str(vipseg_masks), "image_resize": resize}},
    }
