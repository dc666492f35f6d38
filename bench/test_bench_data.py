"""CPU benchmark of training-clip loading: one clip per call, as one DataLoader worker makes it (one OpenCV thread),
per dataset kind at the original's training frame sizes and resize settings.

    pytest bench/test_bench_data.py --benchmark-enable --benchmark-only

clips/s per worker = 1 / mean. The goal (issue 11): >= 8 for video datasets, >= 4 for image pseudo-videos, so that
4 workers keep one GPU busy. The data are the tests' procedural fixtures written in each official layout.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data.fixtures import NUM_CLASSES, make_scenes, write_davis_folder, write_vipseg, write_ytvis  # noqa: E402

from tarvis_fast.config import build_config  # noqa: E402
from tarvis_fast.data.sources import build_source  # noqa: E402
from tarvis_fast.tasks import Task  # noqa: E402


def _source(root: Path, kind: str):
    """(ClipSource, its task) of one kind: YouTube-VIS (720p, min dims 448/512, max 1024), VIPSeg (720p, 512),
    DAVIS (480p, 512) as VOS and PET."""
    if kind == "vis":
        scenes = make_scenes(2, frames=12, size=(720, 1280))
        dataset = {"type": "instance_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "ytvis", "images": str(root / "JPEGImages"), "annotations": str(write_ytvis(root, scenes)),
            "frame_sampling_multiplicative_factor": 7.5, "image_resize": {"min_dims": [448, 512], "max_dim": 1024}}}
    elif kind == "vps":
        images, info, masks = write_vipseg(root, make_scenes(2, frames=12, size=(720, 1280)))
        dataset = {"type": "panoptic_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "vipseg", "images": str(images), "annotations": str(info), "masks": str(masks),
            "frame_sampling_multiplicative_factor": 5.0, "image_resize": {"min_dims": [512]}}}
    else:
        images, annotations = write_davis_folder(root, make_scenes(2, frames=12, size=(480, 854)))
        dataset = {"type": "vos", "training": {
            "layout": "davis_folder", "images": str(images), "annotations": str(annotations),
            "frame_sampling_multiplicative_factor": 7.5, "image_resize": {"min_dims": [512]}}}
    cfg = build_config([("bench", {"datasets": {"X": dataset},
                                   "training": {"dataset_list": ["X"], "dataset_weights": [1.0]}})])
    return build_source("X", cfg)


@pytest.mark.benchmark(group="training clips per worker (cpu)")
@pytest.mark.parametrize("kind", ["vis", "vps", "vos", "pet"])
def test_clip_loading(benchmark, tmp_path, kind: str) -> None:
    cv2.setNumThreads(1)  # what a DataLoader worker runs with
    source = _source(tmp_path, kind)
    task = {"vis": Task.VIS, "vps": Task.VPS, "vos": Task.VOS, "pet": Task.PET}[kind]
    seeds = itertools.count()

    def one_clip():
        rng = np.random.default_rng(next(seeds))
        return source.sample(rng, task, 2 if task.guided_by_objects else None)

    sample = benchmark(one_clip)
    assert sample.task is task
