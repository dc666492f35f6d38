"""The real DAVIS clip (horsejump-high, its OSVOS masks as palette annotations) in the DAVIS folder layout: VOS and
PET clips whose masks and points are the source masks after the clip's resize, flip and crop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.config import build_config
from tarvis_fast.data.augment import crop_size
from tarvis_fast.data.points import mask_to_point
from tarvis_fast.data.sources import build_source
from tarvis_fast.resize import resize_masks
from tarvis_fast.tasks import Task


def _source(davis_clip: Path, **settings):
    """The real clip as a VOS training dataset; `settings` are extra keys of its `training:` entry."""
    training = {"layout": "davis_folder", "images": str(davis_clip / "JPEGImages"),
                "annotations": str(davis_clip / "osvos"), "frame_sampling_multiplicative_factor": 7.5,
                "image_resize": {"mode": "min_dim", "min_dims": [240, 288], "max_dim": 1333}, **settings}
    dataset = {"type": "vos", "training": training}
    cfg = build_config([("test", {"datasets": {"DAVIS": dataset},
                                  "training": {"dataset_list": ["DAVIS"], "dataset_weights": [1.0]}})])
    return build_source("DAVIS", cfg)


@pytest.fixture(scope="module")
def source(davis_clip: Path):
    return _source(davis_clip)


def test_the_vos_crop_is_the_originals_unless_configured(source, davis_clip):
    assert source.settings.crop_factor == (0.75, 0.75)
    whole = _source(davis_clip, crop_factor=[1.0, 1.0])
    sample = whole.sample(np.random.default_rng(0), Task.VOS, 1)
    assert sample.meta["crop"] == (0, 0) and sample.meta["size"] == sample.meta["resized"]


def test_real_davis_clips_match_the_annotations(source, davis_clip):
    assert source.object_counts() == (1, 2)
    for seed in range(6):
        task = (Task.VOS, Task.PET)[seed % 2]
        rng = np.random.default_rng(seed)
        sample = source.sample(rng, task, int(rng.choice(source.object_counts())))
        meta = sample.meta
        assert meta["source"] == "horsejump-high" and meta["frames"][0] < meta["frames"][1] < meta["frames"][2] <= 49
        labels = np.stack([np.array(Image.open(davis_clip / "osvos" / "horsejump-high" / f"{t:05d}.png"))
                           for t in meta["frames"]])
        masks = np.stack([labels == i for i in meta["instance_ids"]])
        resized = tuple(meta["resized"])
        assert min(resized) in (240, 288)
        masks = resize_masks(masks.reshape(-1, 480, 854), resized).reshape(len(masks), 3, *resized)
        if meta["flipped"]:
            masks = masks[..., ::-1]
        if meta["crop"] is not None:
            (y, x), (h, w) = meta["crop"], crop_size(*resized, source.settings.crop_factor)
            masks = masks[..., y:y + h, x:x + w]
        assert np.array_equal(sample.masks.numpy(), masks)
        assert tuple(sample.images.shape) == (3, 3, *masks.shape[2:])
        if task is Task.PET:
            h, w = masks.shape[2:]
            expected = [((r + 0.5) / h, (c + 0.5) / w) for r, c in (mask_to_point(m) for m in sample.masks[:, 0])]
            assert np.allclose(sample.points.numpy(), expected)
            assert all(sample.masks[i, 0, int(y * h), int(x * w)] for i, (y, x) in enumerate(sample.points.tolist()))
