"""The example config of the README's "train on your own data": its three datasets, written where it says, train."""
from __future__ import annotations

import shutil
from pathlib import Path

from helpers.own_data import (
    make_scenes,
    write_davis_folder,
    write_panoptic_video,
    write_ytvis,
)

from tarvis_fast.config import load_config
from tarvis_fast.data.loader import build_train_loader
from tarvis_fast.datasets import WORKSPACE_ENV
from tarvis_fast.formats.panoptic import VIPSEG_GT_JSON, VIPSEG_GT_PNG_DIR
from tarvis_fast.tasks import Task

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "own_data_example.yaml"


def test_the_example_config_trains_on_data_in_its_layouts(tmp_path, monkeypatch):
    scenes = make_scenes(2)
    write_ytvis(tmp_path / "my_data" / "vis", scenes)
    write_davis_folder(tmp_path / "my_data" / "vos", scenes)
    write_panoptic_video(tmp_path / "my_data" / "vps", scenes)
    gt = tmp_path / "my_data" / "vps" / "gt"
    shutil.move(gt / VIPSEG_GT_JSON, tmp_path / "my_data" / "vps" / "panoptic.json")
    shutil.move(gt / VIPSEG_GT_PNG_DIR, tmp_path / "my_data" / "vps" / "panomasksRGB")
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path))
    cfg = load_config(EXAMPLE, ["--cfg.training.num_iterations", "24", "--cfg.training.batch_size", "1",
                                "--cfg.training.sample_chunking_factor", "1"])
    batches = list(build_train_loader(cfg, rank=0, world_size=1, micro_batch_size=1))
    assert len(batches) == 24
    assert {b.dataset for *_, b in batches} == {"MY_VIS", "MY_VOS", "MY_VPS"}
    assert {Task.VIS, Task.VPS} <= {b.task for *_, b in batches}
