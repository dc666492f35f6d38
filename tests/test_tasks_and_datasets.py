"""The neutral room shared by training and inference: task names, the dataset table, the resize rules."""
from __future__ import annotations

import numpy as np
import pytest

from tarvis_fast.config import Config, ConfigError, load_config
from tarvis_fast.datasets import BENCHMARKS, DATASETS, dataset_info, vocabularies, vocabulary
from tarvis_fast.evaluation.__main__ import EVALUATORS
from tarvis_fast.inference.readers import READERS
from tarvis_fast.inference.writers import WRITERS
from tarvis_fast.resize import min_dim_size, resize_frames, resize_masks
from tarvis_fast.tasks import Task


def test_task_names_parse_from_every_spelling():
    assert Task.parse("vis") is Task.VIS and Task.parse("instance_seg") is Task.VIS
    assert Task.parse("PET") is Task.PET and Task.parse(Task.VOS) is Task.VOS
    assert [t.short_name for t in Task] == ["vis", "vps", "vos", "pet"]
    assert Task.VOS.guided_by_objects and Task.PET.guided_by_objects and not Task.VPS.guided_by_objects
    with pytest.raises(ValueError, match="unknown task 'track'; choose from vis, vps, vos, pet"):
        Task.parse("track")


def test_every_benchmark_row_names_a_reader_a_writer_and_a_metric():
    assert BENCHMARKS == ("YOUTUBE_VIS", "OVIS", "DAVIS", "BURST", "KITTI_STEP", "CITYSCAPES_VPS", "VIPSEG",
                          "DEMO_VIS", "DEMO_VPS", "DEMO_VOS", "DEMO_PET")
    for name in BENCHMARKS:
        info = DATASETS[name].benchmark
        assert info.layout in READERS and info.layout in WRITERS and info.metric in EVALUATORS, name
        assert set(info.inputs(info.splits[0])) <= {"images", "annotations", "image_set"}


def test_class_counts_agree_with_the_packaged_vocabularies_and_the_config():
    assert vocabularies(Task.VIS) == ["youtube_vis", "ovis", "demo_vis"]
    assert vocabularies(Task.VPS) == ["kitti_step", "cityscapes_vps", "vipseg", "demo_vps"]
    cfg = Config()
    for name, row in DATASETS.items():
        assert cfg.datasets[name].type is row.task and cfg.datasets[name].num_classes == row.num_classes
        if name.lower() in vocabularies():
            assert len(vocabulary(name).names) == row.num_classes
    with pytest.raises(ValueError, match="unknown dataset 'ytvis'"):
        dataset_info("ytvis")


def test_config_reads_task_names_as_the_original_spells_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets:\n  MINE:\n    type: panoptic_seg\n    num_classes: 3\n")
    assert load_config(path).datasets["MINE"].type is Task.VPS
    path.write_text("datasets:\n  MINE:\n    type: pet\n")
    with pytest.raises(ConfigError, match="type is one of"):
        load_config(path)
    path.write_text("datasets:\n  MINE:\n    type: tracking\n")
    with pytest.raises(ConfigError, match=r"'datasets.MINE.type' must be one of \['instance_seg'"):
        load_config(path)


def test_min_dim_resize_rule_and_mask_threshold():
    assert min_dim_size(720, 1280, 448, 1333) == (448, 796)
    assert min_dim_size(100, 1000, 448, 1333) == (133, 1333)  # the longer side is capped
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    assert resize_frames(frames, (4, 6)) is frames and resize_frames(frames, (2, 3)).shape == (2, 2, 3, 3)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :, :2] = True  # the left half survives a halving; a single pixel column does not
    assert resize_masks(masks, (2, 2)).tolist() == [[[True, False], [True, False]]]
    thin = np.zeros((1, 4, 4), bool)
    thin[0, :, 0] = True
    assert not resize_masks(thin, (2, 2)).any()


def test_the_model_takes_pet_as_an_object_guided_call():
    import torch

    from helpers.tiny import box_masks, clip, tiny_model
    from tarvis_fast.model import ObjectReferences

    model = tiny_model().eval()
    images = clip(height=64, width=64)
    points = ObjectReferences(points=torch.tensor([[[0.5, 0.5]]]), point_frames=torch.tensor([[0]]))
    with torch.no_grad():
        pet = model(images, Task.PET, objects=points)
        vos = model(images, "vos", objects=points)
    assert pet.task is Task.PET and torch.equal(pet.final.object_logits, vos.final.object_logits)
    with pytest.raises(ValueError, match="needs `objects`"):
        model(images, Task.PET)
    with pytest.raises(ValueError, match="takes no `objects`"):
        model(images, Task.VIS, dataset="KITTI_STEP", objects=ObjectReferences(
            masks=box_masks(1, [(8, 8, 40, 30)], 1, 64, 64), mask_frames=torch.tensor([0])))
