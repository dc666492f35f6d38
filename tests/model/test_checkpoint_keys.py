"""The model's state_dict keys and shapes equal the original TarViS checkpoints' (SPEC §8), so that the
released .pth files load strictly.

The expected lists (checkpoint_spec.py) are written from SPEC §8 alone. The models are built on the meta
device: shapes only, no memory, no forward.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tarvis_fast.config import load_config
from tarvis_fast.model import TarViS, build_model, semantic_classes
from tarvis_fast.model.backbones import build_backbone

from .checkpoint_spec import BACKBONES, expected_keys

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("stage, semantic_rows", [("pretrain", 383), ("finetune", 228)])
def test_state_dict_matches_the_original_checkpoints(backbone: str, stage: str, semantic_rows: int) -> None:
    cfg_file = CONFIGS / f"{stage}_{'swin-large' if backbone == 'SwinLarge' else 'resnet50_swin-tiny'}.yaml"
    cfg = load_config(cfg_file, ["--cfg.model.backbone", backbone])
    with torch.device("meta"):
        model = build_model(cfg)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_keys(backbone, semantic_rows)
    assert sorted(set(expected) - set(actual)) == [], "keys of the original the model lacks"
    assert sorted(set(actual) - set(expected)) == [], "keys the model has and the original does not"
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    assert wrong == {}, "(model, original) shapes"


def test_semantic_query_slices_follow_the_alphabetical_dataset_order() -> None:
    # SPEC §2.4: fine-tuning slices CITYSCAPES_VPS 1-19, KITTI_STEP 20-38, OVIS 39-63, VIPSEG 64-187,
    # YOUTUBE_VIS 188-227 (inclusive rows), whatever order the dataset list has.
    cfg = load_config(CONFIGS / "finetune_resnet50_swin-tiny.yaml")
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.embedding_container.semantic_slices == {
        "CITYSCAPES_VPS": (1, 20), "KITTI_STEP": (20, 39), "OVIS": (39, 64), "VIPSEG": (64, 188),
        "YOUTUBE_VIS": (188, 228),
    }
    cfg = load_config(CONFIGS / "pretrain_resnet50_swin-tiny.yaml")
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.embedding_container.semantic_slices == {
        "ADE20K": (1, 151), "CITYSCAPES": (151, 185), "COCO": (185, 318), "MAPILLARY": (318, 383),
    }


def test_default_sub_modules_are_the_released_models() -> None:
    # TarViS(backbone, semantic_classes=...) builds the neck, query tables, decoder and object encoder in the
    # released sizes: the same keys and shapes as the fine-tuning config builds.
    cfg = load_config(CONFIGS / "finetune_resnet50_swin-tiny.yaml")
    with torch.device("meta"):
        model = TarViS(build_backbone("ResNet50"), semantic_classes=semantic_classes(cfg))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_keys("ResNet50", 228)
