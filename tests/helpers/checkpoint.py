"""The smallest checkpoint `load_model` can build from a config, saved as infer.py expects it (config.yaml beside
the .pth), for tests of inference and of the command lines."""
from __future__ import annotations

from pathlib import Path

import torch

from tarvis_fast.config import Config, ModelConfig, TrainingConfig, save_config
from tarvis_fast.model import build_model

# The datasets the checkpoint has semantic queries for (VIS, VPS) or is run on (VOS).
DATASETS = ["YOUTUBE_VIS", "KITTI_STEP", "DAVIS"]


def save_small_checkpoint(directory: Path) -> Path:
    """A ResNet-50 TarViS with a narrow, shallow head as `directory/model.pth`, its config as
    `directory/config.yaml`; returns the .pth path."""
    cfg = Config(
        model=ModelConfig(backbone="ResNet50", hidden_dim=32, num_heads=2, decoder_layers=2, decoder_ffn_dim=64,
                          neck_layers=1, neck_ffn_dim=64, object_encoder_layers=1, num_object_queries=8,
                          kernel_backend="torch"),
        training=TrainingConfig(dataset_list=DATASETS, dataset_weights=[1.0] * len(DATASETS)),
    )
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, directory / "model.pth")
    save_config(cfg, directory / "config.yaml")
    return directory / "model.pth"
