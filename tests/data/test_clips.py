"""Every video layout yields clips whose targets are the source annotations after the clip's own augmentation,
recomputed here from the source masks with the flip, crop and output size that the clip's meta records."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.own_data import (
    CLASSES,
    NUM_CLASSES,
    Scene,
    make_scenes,
    write_burst,
    write_davis_folder,
    write_panoptic_video,
    write_video_json,
    write_vipseg,
    write_ytvis,
)

from tarvis_fast.config import Config, build_config
from tarvis_fast.data.augment import crop_size, resize_labels
from tarvis_fast.data.clips import ClipSource
from tarvis_fast.data.points import mask_to_point
from tarvis_fast.data.sample import ClipSample
from tarvis_fast.data.sources import build_source
from tarvis_fast.resize import resize_masks
from tarvis_fast.tasks import Task

MIN_DIM = 45  # frames are 60 x 80: every clip is resized

VOS_CROP = (0.75, 0.75)  # the original's VOS crop, a VOS dataset's default crop_factor


@dataclass(frozen=True)
class Layout:
    """How one fixture is written and how its ids map back to the scene's: scene(source name) and object(id) -> k."""

    name: str
    task: Task
    write: Callable[[Path, list[Scene]], dict]
    scene: Callable[[str], int]
    object: Callable[[int], int]


def _by_name(source: str) -> int:
    return int(source.rsplit("vid", 1)[1])


LAYOUTS = [
    Layout("video_json", Task.VPS, lambda root, s: {
        "images": str(root / "images"), "annotations": str(write_video_json(root, s, semantic=True))},
        _by_name, lambda i: i),
    Layout("ytvis", Task.VIS, lambda root, s: {
        "images": str(root / "JPEGImages"), "annotations": str(write_ytvis(root, s))},
        lambda source: int(source) - 1, lambda i: i + 1),
    Layout("davis_folder", Task.VOS, lambda root, s: dict(zip(("images", "annotations"), map(str, write_davis_folder(
        root, s)))), _by_name, lambda i: i),
    Layout("vipseg", Task.VPS, lambda root, s: dict(zip(("images", "annotations", "masks"), map(str, write_vipseg(
        root, s)))), _by_name, lambda i: i % 100),
    Layout("panoptic_video", Task.VPS, lambda root, s: dict(zip(("images", "annotations"), map(str,
        write_panoptic_video(root, s)))), _by_name, lambda i: i % 100),
    Layout("burst", Task.VOS, lambda root, s: {"images": str(root / "frames"), "annotations": str(write_burst(root, s))},
           _by_name, lambda i: i),
]


def config_for(root: Path, layout: Layout, scenes: list[Scene], **training) -> Config:
    paths = layout.write(root, scenes)
    dataset = {"type": layout.task.value, "num_classes": 0 if layout.task is Task.VOS else NUM_CLASSES,
               "training": {"layout": layout.name, "frame_sampling_multiplicative_factor": 2.0,
                            "image_resize": {"mode": "min_dim", "min_dims": [MIN_DIM], "max_dim": 1333}, **paths}}
    return build_config([("test", {"datasets": {"MINE": dataset},
                                   "training": {"dataset_list": ["MINE"], "dataset_weights": [1.0], **training}})])


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return make_scenes(2)


@pytest.fixture(scope="module", params=LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def built(request, tmp_path_factory, scenes) -> tuple[Layout, ClipSource]:
    layout = request.param
    cfg = config_for(tmp_path_factory.mktemp(layout.name), layout, scenes)
    return layout, build_source("MINE", cfg)


def _expected_vis(scene: Scene, sample: ClipSample, ks: list[int], crop_factor: tuple[float, float]):
    """Flip, crop and resize the source masks and labels as the clip's meta says (the VIS/VPS order)."""
    meta, frames = sample.meta, sample.meta["frames"]
    masks, labels = scene.masks(ks)[:, frames], scene.labels[frames]
    if meta["flipped"]:
        masks, labels = masks[..., ::-1], labels[..., ::-1]
    if meta["crop"] is not None:
        (y, x), (h, w) = meta["crop"], crop_size(*scene.labels.shape[1:], crop_factor)
        masks, labels = masks[..., y:y + h, x:x + w], labels[..., y:y + h, x:x + w]
    size = tuple(meta["size"])
    masks = resize_masks(masks.reshape(-1, *masks.shape[2:]), size).reshape(len(ks), len(frames), *size)
    return masks, resize_labels(np.ascontiguousarray(labels), size)


def _expected_vos(scene: Scene, sample: ClipSample, ks: list[int]) -> np.ndarray:
    """Resize, flip and crop the source masks as the clip's meta says (the VOS order)."""
    meta, frames = sample.meta, sample.meta["frames"]
    masks = scene.masks(ks)[:, frames]
    resized = meta["resized"]
    masks = resize_masks(masks.reshape(-1, *masks.shape[2:]), resized).reshape(len(ks), len(frames), *resized)
    if meta["flipped"]:
        masks = masks[..., ::-1]
    if meta["crop"] is not None:
        (y, x), (h, w) = meta["crop"], crop_size(*resized, VOS_CROP)
        masks = masks[..., y:y + h, x:x + w]
    return masks


def test_clips_match_the_source_annotations_after_augmentation(built, scenes):
    layout, source = built
    tasks = [Task.VOS, Task.PET] if layout.task is Task.VOS else [layout.task]
    flips, crops, ignored = set(), 0, 0
    for seed in range(12):
        task = tasks[seed % len(tasks)]
        rng = np.random.default_rng(seed)
        num_objects = int(rng.choice(source.object_counts())) if task.guided_by_objects else None
        sample = source.sample(rng, task, num_objects)
        scene = scenes[layout.scene(sample.meta["source"])]
        ks = [layout.object(i) for i in sample.meta["instance_ids"]]
        frames = sample.meta["frames"]
        assert sample.dataset == "MINE" and sample.task is task
        assert tuple(sample.images.shape) == (3, 3, *sample.meta["size"]) and frames == sorted(frames)
        flips.add(sample.meta["flipped"])
        crops += sample.meta["crop"] is not None
        if task.guided_by_objects:
            assert len(ks) == num_objects and frames[0] < frames[1] < frames[2]
            assert all((scene.instance[frames[0]] == k).any() for k in ks)  # objects of the reference frame
            expected = _expected_vos(scene, sample, ks)
            assert np.array_equal(sample.masks.numpy(), expected)
            if task is Task.PET:
                h, w = expected.shape[2:]
                points = [((r + 0.5) / h, (c + 0.5) / w) for r, c in (mask_to_point(m) for m in sample.masks[:, 0])]
                assert np.allclose(sample.points.numpy(), points)
            continue
        masks, (semantic, ignore) = _expected_vis(scene, sample, ks, (0.75, 0.75))
        assert np.array_equal(sample.masks.numpy(), masks)
        assert masks.any(axis=(1, 2, 3)).all()
        assert sample.classes.tolist() == [CLASSES[k] for k in ks]
        assert sample.meta["category_ids"] == [source.category_ids[c] for c in sample.classes.tolist()]
        if task is Task.VPS:
            assert np.array_equal(sample.semantic.numpy(), semantic)
            assert np.array_equal(sample.ignore.numpy(), ignore)
            ignored += bool(ignore.any())
    assert flips == {True, False} and crops > 0
    assert ignored > 0 or layout.task is not Task.VPS


def test_vos_object_counts_follow_the_reference_frames(built):
    layout, source = built
    if layout.task is Task.VOS:
        assert source.object_counts() == (1, 2, 3)   # three objects, all on frames 2..
    else:
        assert source.object_counts() == ()
