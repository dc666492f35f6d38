"""Fixtures shared by the inference tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tarvis_fast.config import Config, ModelConfig, TrainingConfig, save_config
from tarvis_fast.model import build_model


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A ResNet-50 TarViS with a narrow, shallow head: the smallest model `load_model` can build from a config."""
    cfg = Config(
        model=ModelConfig(backbone="ResNet50", hidden_dim=32, num_heads=2, decoder_layers=2, decoder_ffn_dim=64,
                          neck_layers=1, neck_ffn_dim=64, object_encoder_layers=1, num_object_queries=8,
                          kernel_backend="torch"),
        training=TrainingConfig(dataset_list=["YOUTUBE_VIS", "KITTI_STEP", "DAVIS"], dataset_weights=[1.0] * 3),
    )
    directory = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, directory / "model.pth")
    save_config(cfg, directory / "config.yaml")
    return directory / "model.pth"
