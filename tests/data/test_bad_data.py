"""Bad training data fails with an error naming the file and the problem; unusable clips are drawn again and counted."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.own_data import (
    NUM_CLASSES,
    make_scenes,
    write_davis_folder,
    write_video_json,
    write_ytvis,
)

from tarvis_fast.config import build_config
from tarvis_fast.data.clips import UnusableDatasetError
from tarvis_fast.data.loader import build_train_loader
from tarvis_fast.data.sources import build_source
from tarvis_fast.data.videos import DataError
from tarvis_fast.formats.rle import encode_rle
from tarvis_fast.tasks import Task


def _cfg(layout: str, task: Task, images: Path, annotations: Path, num_classes: int = NUM_CLASSES, **training):
    dataset = {"type": task.value, "num_classes": 0 if task is Task.VOS else num_classes,
               "training": {"layout": layout, "images": str(images), "annotations": str(annotations),
                            # no crop and a resize by 1/2: a one-pixel object reads 0.25 and vanishes
                            "crop_factor": [1.0, 1.0],
                            "image_resize": {"mode": "min_dim", "min_dims": [30], "max_dim": 1333}}}
    return build_config([("test", {"datasets": {"MINE": dataset}, "training": {
        "dataset_list": ["MINE"], "dataset_weights": [1.0], "batch_size": 1, **training}})])


def _ytvis(tmp_path: Path, edit=None) -> Path:
    path = write_ytvis(tmp_path, make_scenes(2))
    if edit is not None:
        content = json.loads(path.read_text())
        edit(content)
        path.write_text(json.dumps(content))
    return path


def _build_ytvis(tmp_path: Path, edit=None, **kwargs):
    return build_source("MINE", _cfg("ytvis", Task.VIS, tmp_path / "JPEGImages", _ytvis(tmp_path, edit), **kwargs))


def test_missing_image_names_the_file(tmp_path):
    source = _build_ytvis(tmp_path)
    for jpg in (tmp_path / "JPEGImages").rglob("00003.jpg"):
        jpg.unlink()
    with pytest.raises(DataError, match=r"00003\.jpg: image not found"):
        for seed in range(20):
            source.sample(np.random.default_rng(seed), Task.VIS)


def test_davis_annotation_without_image(tmp_path):
    images, annotations = write_davis_folder(tmp_path, make_scenes(1))
    (images / "vid0" / "00004.jpg").unlink()
    with pytest.raises(DataError, match=r"vid0/00004\.jpg: missing image for annotation 00004\.png"):
        build_source("MINE", _cfg("davis_folder", Task.VOS, images, annotations))


def test_image_of_another_size_than_its_annotation(tmp_path):
    def shrink(content):  # the json (and its RLEs) say 50 rows; the JPEGs have 60
        content["videos"][0]["height"] = 50
        for ann in content["annotations"]:
            for rle in ann["segmentations"]:
                if rle is not None and ann["video_id"] == 1:
                    rle["size"] = [50, 80]
    source = _build_ytvis(tmp_path, shrink)
    with pytest.raises(DataError, match=r"image is 60x80 \(HxW\) but its annotation is 50x80"):
        for seed in range(20):
            source.sample(np.random.default_rng(seed), Task.VIS)


def test_rle_size_differs_from_its_video(tmp_path):
    def wrong(content):
        content["annotations"][0]["segmentations"][2]["size"] = [30, 40]
    with pytest.raises(DataError, match=r"train\.json: annotations\[0\] frame 2: mask size \[30, 40\]"):
        _build_ytvis(tmp_path, wrong)


def test_unknown_category_id(tmp_path):
    def unknown(content):
        content["annotations"][1]["category_id"] = 999
    with pytest.raises(DataError, match=r"train\.json: annotations\[1\]: unknown category_id 999"):
        _build_ytvis(tmp_path, unknown)


def test_more_classes_than_the_config_says(tmp_path):
    with pytest.raises(DataError, match=r"classes span 3\.\.4, but datasets\.MINE\.num_classes is 3"):
        _build_ytvis(tmp_path, num_classes=3)


def test_instance_id_not_in_categories(tmp_path):
    path = write_video_json(tmp_path, make_scenes(1), semantic=False)
    content = json.loads(path.read_text())
    del content["sequences"][0]["categories"]["2"]
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"annotations\.json: sequence vid0: instance ids \[2\] have masks but are not "
                                        r"in 'categories'"):
        build_source("MINE", _cfg("video_json", Task.VIS, tmp_path / "images", path))


@pytest.mark.parametrize("content", ["", '{"videos": [], "categories": [], "annotations": []}'])
def test_empty_annotation_file(tmp_path, content):
    (tmp_path / "images").mkdir()
    path = tmp_path / "empty.json"
    path.write_text(content)
    with pytest.raises(DataError, match=r"empty\.json: (not valid JSON|'videos' must be a non-empty list)"):
        build_source("MINE", _cfg("ytvis", Task.VIS, tmp_path / "images", path))


def test_no_annotated_instance(tmp_path):
    with pytest.raises(DataError, match=r"train\.json: no annotated instance in any video"):
        _build_ytvis(tmp_path, lambda content: content.update(annotations=[]))


def test_unusable_clips_are_drawn_again_and_reported(tmp_path):
    def shrink_video_2(content):  # video 2's objects become one pixel: the 30-pixel resize erases them
        for ann in content["annotations"]:
            if ann["video_id"] == 2:
                for t, rle in enumerate(ann["segmentations"]):
                    if rle is not None:
                        mask = np.zeros((60, 80), np.uint8)
                        mask[10 + ann["id"], 10 + t] = 1
                        ann["segmentations"][t] = encode_rle(mask)
    cfg = _cfg("ytvis", Task.VIS, tmp_path / "JPEGImages", _ytvis(tmp_path, shrink_video_2), num_iterations=12)
    loader = build_train_loader(cfg, rank=0, world_size=1, micro_batch_size=1)
    sources = [m["source"] for _, _, batch in loader for m in batch.meta]
    assert set(sources) == {"1"} and loader.skipped_samples > 0
    assert loader.report().startswith(f"data: {loader.skipped_samples} unusable samples") and "MINE" in loader.report()


def test_a_dataset_without_usable_clips_fails_clearly(tmp_path):
    def shrink_all(content):
        mask = np.zeros((60, 80), np.uint8)
        mask[5, 5] = 1
        for ann in content["annotations"]:
            ann["segmentations"] = [encode_rle(mask) if rle is not None else None for rle in ann["segmentations"]]
    source = _build_ytvis(tmp_path, shrink_all)
    with pytest.raises(UnusableDatasetError, match="MINE: 50 clips in a row were unusable for vis"):
        source.sample(np.random.default_rng(0), Task.VIS)
