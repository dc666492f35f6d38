"""CPU benchmark of training-clip loading: one clip per call, as one DataLoader worker makes it (one OpenCV thread),
per dataset kind at the original's training frame sizes and resize settings.

    pytest bench/test_bench_data.py --benchmark-enable --benchmark-only

clips/s per worker = 1 / mean. The goal (issue 11): >= 8 for video datasets, >= 4 for image pseudo-videos, so that
4 workers keep one GPU busy. The annotations are the tests' procedural fixtures written in each official layout; the
frames are photographs (the real DAVIS clip in ../shared/data, resized to each kind's size; smooth synthetic frames
when it is absent), since random-noise JPEGs decode several times slower than photos and would measure the codec.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.own_data import (  # noqa: E402
    CLASSES,
    NUM_CLASSES,
    Scene,
    make_scenes,
    write_davis_folder,
    write_vipseg,
    write_ytvis,
)

from tarvis_fast.config import build_config  # noqa: E402
from tarvis_fast.data.sources import build_source  # noqa: E402
from tarvis_fast.formats.panoptic import write_panoptic_png  # noqa: E402
from tarvis_fast.tasks import Task  # noqa: E402

DAVIS_FRAMES = Path(os.environ.get("TARVIS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "davis" / "JPEGImages" / "horsejump-high"


def _photos(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """(count, H, W, 3) uint8 BGR: DAVIS frames resized to `size`, or smooth synthetic frames without them."""
    files = sorted(DAVIS_FRAMES.glob("*.jpg"))
    h, w = size
    if files:
        start = seed * count % max(len(files) - count, 1)
        return np.stack([cv2.resize(cv2.imread(str(f)), (w, h), interpolation=cv2.INTER_LINEAR)
                         for f in files[start:start + count]])
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (count, 9, 16, 3), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 3)
                     for f in coarse])


def _scenes(count: int, frames: int, size: tuple[int, int]) -> list[Scene]:
    return [dataclasses.replace(scene, frames=_photos(frames, size, i))
            for i, scene in enumerate(make_scenes(count, frames=frames, size=size))]


def _write_coco_panoptic(root: Path, scenes: list[Scene], cityscapes: bool) -> tuple[Path, Path, Path]:
    """One image per scene (its frame 0) in the COCO-panoptic layout: stuff labels 0 and 1 and the scene's instances,
    with the instance rectangles scaled up to cover a realistic share of the image. cityscapes: the images lie in
    <city>/<city>_<seq>_<frame>_leftImg8bit.jpg as that dataset's."""
    images, annotations = [], []
    (root / "pan_maps").mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        file_name = f"{scene.name}_000000_000000_leftImg8bit.jpg" if cityscapes else f"{scene.name}.jpg"
        folder = root / "images" / (scene.name if cityscapes else "")
        folder.mkdir(parents=True, exist_ok=True)
        h, w = scene.frames.shape[1:3]
        ids = np.where(np.arange(h)[:, None] < h // 2, 1000, 1001) * np.ones((1, w), np.int64)
        segments = [{"id": 1000, "category_id": 0}, {"id": 1001, "category_id": 1}]
        for k, cls in CLASSES.items():
            y, x = h // 8 + k * h // 8, w // 10 + k * w // 5
            ids[y:y + h // 4, x:x + w // 6] = k
            segments.append({"id": k, "category_id": cls - 1})
        cv2.imwrite(str(folder / file_name), scene.frames[0])
        write_panoptic_png(root / "pan_maps" / f"{scene.name}.png", ids)
        images.append({"id": scene.name, "file_name": file_name, "height": h, "width": w})
        annotations.append({"image_id": scene.name, "file_name": f"{scene.name}.png", "segments_info": segments})
    categories = [{"id": c, "name": f"class{c}", "isthing": int(c + 1 in CLASSES.values())} for c in range(NUM_CLASSES)]
    path = root / "segments.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root / "images", path, root / "pan_maps"


def _source(root: Path, kind: str):
    """The ClipSource of one kind: YouTube-VIS (720p, min dims 448/512, max 1024), VIPSeg (720p, 512), DAVIS (480p,
    512) as VOS and PET; COCO (640 x 480), Cityscapes (2048 x 1024) and Mapillary (3264 x 2448, first resized to
    shortest edge 800) pseudo-videos (512 x 512 crops, T = 3)."""
    name = "X"
    if kind == "vis":
        scenes = _scenes(2, 12, (720, 1280))
        dataset = {"type": "instance_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "ytvis", "images": str(root / "JPEGImages"), "annotations": str(write_ytvis(root, scenes)),
            "frame_sampling_multiplicative_factor": 7.5, "image_resize": {"min_dims": [448, 512], "max_dim": 1024}}}
    elif kind == "vps":
        images, info, masks = write_vipseg(root, _scenes(2, 12, (720, 1280)))
        dataset = {"type": "panoptic_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "vipseg", "images": str(images), "annotations": str(info), "masks": str(masks),
            "frame_sampling_multiplicative_factor": 5.0, "image_resize": {"min_dims": [512]}}}
    elif kind in ("vos", "pet"):
        images, annotations = write_davis_folder(root, _scenes(2, 12, (480, 854)))
        dataset = {"type": "vos", "training": {
            "layout": "davis_folder", "images": str(images), "annotations": str(annotations),
            "frame_sampling_multiplicative_factor": 7.5, "image_resize": {"min_dims": [512]}}}
    else:
        name = {"coco": "COCO", "cityscapes": "CITYSCAPES", "mapillary": "MAPILLARY"}[kind]
        size = {"coco": (480, 640), "cityscapes": (1024, 2048), "mapillary": (2448, 3264)}[kind]
        images, annotations, masks = _write_coco_panoptic(root, _scenes(4, 1, size), kind == "cityscapes")
        dataset = {"type": "panoptic_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "coco_panoptic", "images": str(images), "annotations": str(annotations), "masks": str(masks)}}
    cfg = build_config([("bench", {"datasets": {name: dataset},
                                   "training": {"dataset_list": [name], "dataset_weights": [1.0]}})])
    return build_source(name, cfg)


TASKS = {"vis": Task.VIS, "vps": Task.VPS, "vos": Task.VOS, "pet": Task.PET, "coco": Task.VPS,
         "cityscapes": Task.VPS, "mapillary": Task.VPS}


@pytest.mark.benchmark(group="training clips per worker (cpu)")
@pytest.mark.parametrize("kind", list(TASKS))
def test_clip_loading(benchmark, tmp_path, kind: str) -> None:
    cv2.setNumThreads(1)  # what a DataLoader worker runs with
    source = _source(tmp_path, kind)
    task = TASKS[kind]
    seeds = itertools.count()

    def one_clip():
        rng = np.random.default_rng(next(seeds))
        return source.sample(rng, task, 2 if task.guided_by_objects and not source.pseudo_video else None)

    sample = benchmark(one_clip)
    assert sample.task is task
