"""`load_model` reads a checkpoint saved in the original's layout, with the original's config.yaml beside it,
and loads it strictly. The checkpoint is synthetic: random tensors with the keys and shapes of SPEC §8
(checkpoint_spec.py), not produced by the model code."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import tarvis_fast
from tarvis_fast.model import TarViS

from .checkpoint_spec import expected_keys

FINETUNE_DATASETS = ["YOUTUBE_VIS", "OVIS", "KITTI_STEP", "CITYSCAPES_VPS", "VIPSEG", "BURST", "DAVIS"]

# A fine-tuned model's config.yaml as the original dumps it (upper-case keys, SPEC §4), cut to the sections
# that describe the network.
ORIGINAL_CONFIG = {
    "MODEL": {"BACKBONE": "ResNet50", "CROSS_ATTENTION_TYPE": "hard_masked", "NUM_BACKGROUND_QUERIES": 1,
              "NUM_OBJECT_QUERIES": 128, "NUM_VOS_QUERIES_PER_OBJECT": 4},
    "INPUT": {"RGB": True, "PIXEL_MEAN": [123.675, 116.28, 103.53], "PIXEL_STD": [58.395, 57.12, 57.375]},
    "TRAINING": {"PRETRAINING": False, "BATCH_SIZE": 32, "CLIP_LENGTH": 3, "NUM_ITERATIONS": 90000,
                 "DATASET_LIST": FINETUNE_DATASETS,
                 "DATASET_WEIGHTS": [0.225, 0.225, 0.075, 0.075, 0.15, 0.2, 0.05]},
    "DATASETS": {
        "YOUTUBE_VIS": {"TYPE": "instance_seg", "NUM_CLASSES": 40},
        "OVIS": {"TYPE": "instance_seg", "NUM_CLASSES": 25},
        "KITTI_STEP": {"TYPE": "panoptic_seg", "NUM_CLASSES": 19},
        "CITYSCAPES_VPS": {"TYPE": "panoptic_seg", "NUM_CLASSES": 19, "SHARED_SEMSEG_QUERIES": False},
        "VIPSEG": {"TYPE": "panoptic_seg", "NUM_CLASSES": 124},
        "BURST": {"TYPE": "vos"},
        "DAVIS": {"TYPE": "vos"},
    },
}


def synthetic_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) for key, shape in expected_keys("ResNet50", 228).items()}
    state["vos_query_extractor.bg_grid_size"] = torch.tensor([4, 4])
    return state


def save_original_checkpoint(directory: Path, state: dict[str, torch.Tensor]) -> Path:
    """The original trainer's checkpoint dict (SPEC §5.6) and its config.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "090000.pth"
    torch.save({
        "model": state,
        "optimizers_and_lr_schedulers": [({"state": {}, "param_groups": [{"lr": 1e-6, "weight_decay": 0.05}]},
                                          [{"last_epoch": 90000, "base_lrs": [1e-4]}])],
        "eta_estimator": {"elapsed": 12345.0},
        "checkpoint_manager": {"saved": ["080000.pth", "090000.pth"]},
        "metrics_logger": {},
        "trainer_state_params": {"total_iterations": 90000, "elapsed_iterations": 90000},
        "grad_scaler": {"scale": 65536.0, "growth_factor": 2.0},
        "extra": {},
    }, path)
    (directory / "config.yaml").write_text(yaml.safe_dump(ORIGINAL_CONFIG))
    return path


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = synthetic_state_dict()
    return save_original_checkpoint(tmp_path_factory.mktemp("resnet50_finetune"), state), state


@pytest.mark.slow
def test_original_checkpoint_loads_strictly_with_every_tensor(original_checkpoint) -> None:
    path, state = original_checkpoint
    model = tarvis_fast.load_model(path)
    assert isinstance(model, TarViS) and not model.training
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    assert model.datasets == ["CITYSCAPES_VPS", "KITTI_STEP", "OVIS", "VIPSEG", "YOUTUBE_VIS"]
    assert model.embedding_container.num_classes("YOUTUBE_VIS") == 40


def test_a_bare_state_dict_loads_too(tmp_path: Path, original_checkpoint) -> None:
    path, state = original_checkpoint
    torch.save(state, tmp_path / "weights.pth")
    model = tarvis_fast.load_model(tmp_path / "weights.pth", config=path.parent / "config.yaml")
    assert torch.equal(model.decoder.scale_embed.weight, state["decoder.scale_embed.weight"])


def test_loaded_background_grid_takes_effect(tmp_path: Path) -> None:
    state = synthetic_state_dict()
    state["vos_query_extractor.bg_grid_size"] = torch.tensor([2, 3])
    model = tarvis_fast.load_model(save_original_checkpoint(tmp_path, state))
    assert model.vos_query_extractor.num_background_queries == 6


def test_mismatches_are_named(tmp_path: Path) -> None:
    state = synthetic_state_dict()
    state["embedding_container._semantic_queries"] = torch.zeros(383, 256)  # a pre-training table
    del state["decoder.decoder_norm.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        tarvis_fast.load_model(save_original_checkpoint(tmp_path, state))
    message = str(err.value)
    assert "decoder.decoder_norm.bias" in message
    assert "decoder.extra.weight" in message
    assert "embedding_container._semantic_queries: checkpoint (383, 256), model (228, 256)" in message


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        tarvis_fast.load_model(tmp_path / "nothing.pth", config=tmp_path / "nothing.yaml")
    torch.save({}, tmp_path / "lonely.pth")
    with pytest.raises(FileNotFoundError, match="config.yaml does not exist"):
        tarvis_fast.load_model(tmp_path / "lonely.pth")
