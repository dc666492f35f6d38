"""The preview command: one PNG strip and one json per clip, the json's masks the clip's targets."""
from __future__ import annotations

import json

import cv2
import numpy as np
import yaml
from helpers.own_data import NUM_CLASSES, make_scenes, write_davis_folder, write_vipseg

from tarvis_fast.data.preview import main
from tarvis_fast.formats.rle import decode_rle


def _config(tmp_path) -> str:
    scenes = make_scenes(2)
    images, annotations = write_davis_folder(tmp_path / "davis", scenes)
    vips_images, info, masks = write_vipseg(tmp_path / "vipseg", scenes)
    resize = {"mode": "min_dim", "min_dims": [48], "max_dim": 1333}
    cfg = {"datasets": {
        "MY_VOS": {"type": "vos", "training": {"layout": "davis_folder", "images": str(images),
                                               "annotations": str(annotations), "image_resize": resize}},
        "MY_VPS": {"type": "panoptic_seg", "num_classes": NUM_CLASSES, "training": {
            "layout": "vipseg", "images": str(vips_images), "annotations": str(info), "masks": str(masks),
            "image_resize": resize}}},
        "training": {"dataset_list": ["MY_VOS", "MY_VPS"], "dataset_weights": [0.5, 0.5],
                     "point_vos_task_sample_likelihood": 0.5}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_preview_writes_strips_and_jsons(tmp_path, capsys):
    cfg = _config(tmp_path)
    for dataset in ("MY_VOS", "MY_VPS"):
        out = tmp_path / dataset
        assert main(["--cfg", cfg, "--dataset", dataset, "--samples", "4", "--out", str(out), "--seed", "3"]) == 0
        tasks, given_by = set(), []
        for i in range(4):
            record = json.loads((out / f"sample_{i:04d}.json").read_text())
            strip = cv2.imread(str(out / f"sample_{i:04d}.png"))
            h, w = record["size"]
            assert strip.shape == (h, 3 * w + 2 * 4, 3)
            assert record["dataset"] == dataset and len(record["frames"]) == 3 and record["source"].startswith("vid")
            tasks.add(record["task"])
            kinds = ""
            for target in record["targets"]:
                masks = np.stack([decode_rle(rle) for rle in target["masks"]])
                assert masks.shape == (3, h, w) and masks.any()
                if record["task"] == "vps":
                    assert target["class"] in (2, 3) and target["name"] == f"class{target['class']}"
                kinds += "p" if "point" in target else "m"
                if "point" in target:
                    y, x = target["point"]
                    assert masks[0, int(y * h), int(x * w)]
            given_by.append(kinds)
            # point objects come last; the record is PET only when every object is one
            assert kinds == "".join(sorted(kinds)) and (record["task"] == "pet") == (kinds.count("m") == 0 < len(kinds))
        assert tasks <= ({"vos", "pet"} if dataset == "MY_VOS" else {"vps"})
        if dataset == "MY_VOS":
            assert any("p" in kinds for kinds in given_by) and any("m" in kinds for kinds in given_by), given_by


def test_preview_names_an_unknown_dataset(tmp_path, capsys):
    cfg = _config(tmp_path)
    try:
        main(["--cfg", cfg, "--dataset", "NOPE", "--samples", "1", "--out", str(tmp_path / "o")])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "--dataset NOPE: not in the config's datasets" in capsys.readouterr().err
