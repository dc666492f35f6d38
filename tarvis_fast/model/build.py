"""Building the network (from sizes or from a config), and loading a checkpoint (ours or the original's) with
its config.

A checkpoint directory holds a `.pth` file and the `config.yaml` it was trained with, as the released
TarViS models do. The `.pth` is either a training checkpoint with the weights under "model" (the original's
layout, and ours) or a bare state_dict. Keys and shapes are the original's (SPEC §8), so loading is strict.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tarvis_fast.config import (
    Config,
    load_checkpoint_config,
    load_config,
    semantic_classes,
)
from tarvis_fast.formats.checkpoint import check_checkpoint_file
from tarvis_fast.model.backbones import build_backbone
from tarvis_fast.model.decoder import MaskedAttentionDecoder
from tarvis_fast.model.neck import TemporalNeck
from tarvis_fast.model.object_encoder import ObjectEncoder
from tarvis_fast.model.queries import QueryEmbeddings
from tarvis_fast.model.tarvis import TarViS


def build_tarvis(backbone: nn.Module, *, semantic_classes: Mapping[str, int], num_instance_queries: int = 128,
                 num_background_queries: int = 1, queries_per_mask_object: int = 4, dim: int = 256, num_heads: int = 8,
                 decoder_layers: int = 9, decoder_ffn_dim: int = 2048, neck_layers: int = 6, neck_ffn_dim: int = 1024,
                 object_encoder_layers: int = 4, bg_grid_size: tuple[int, int] = (4, 4),
                 kernel_backend: str = "auto") -> TarViS:
    """A randomly initialised TarViS on `backbone`, its other sub-modules built in the given sizes (by default
    the released models').

    Args:
        backbone: see `TarViS`.
        semantic_classes: semantic classes of each VIS/VPS dataset the model has semantic queries for.
        num_instance_queries: 128 in the released models.
        num_background_queries: VIS/VPS background queries (1).
        queries_per_mask_object: queries per VOS mask object in training (4); eval mode uses twice as many.
        dim, num_heads: width and heads of the neck, decoder and object encoder (256, 8).
        decoder_layers, decoder_ffn_dim: 9, 2048 (the object encoder's FFNs are as wide).
        neck_layers, neck_ffn_dim: 6, 1024.
        object_encoder_layers: 4.
        bg_grid_size: (rows, cols) of the VOS background queries, (4, 4).
        kernel_backend: "auto", "triton" or "torch" for the deformable and masked attention ops.
    """
    return TarViS(
        backbone,
        neck=TemporalNeck(backbone.out_channels, dim, num_heads, neck_ffn_dim, neck_layers, kernel_backend),
        queries=QueryEmbeddings(semantic_classes, dim, num_instance_queries, num_background_queries),
        decoder=MaskedAttentionDecoder(dim, num_heads, decoder_ffn_dim, decoder_layers, backend=kernel_backend),
        object_encoder=ObjectEncoder(dim, num_heads, object_encoder_layers, decoder_ffn_dim, bg_grid_size),
        queries_per_mask_object=queries_per_mask_object,
    )


def build_model(cfg: Config) -> TarViS:
    """A randomly initialised TarViS as `cfg.model` and the training dataset list describe it."""
    m = cfg.model
    return build_tarvis(
        build_backbone(m.backbone, drop_path_rate=m.drop_path_rate, resnet_norm=m.backbone_norm),
        semantic_classes=semantic_classes(cfg),
        num_instance_queries=m.num_object_queries,
        num_background_queries=m.num_background_queries,
        queries_per_mask_object=m.num_vos_queries_per_object,
        dim=m.hidden_dim,
        num_heads=m.num_heads,
        decoder_layers=m.decoder_layers,
        decoder_ffn_dim=m.decoder_ffn_dim,
        neck_layers=m.neck_layers,
        neck_ffn_dim=m.neck_ffn_dim,
        object_encoder_layers=m.object_encoder_layers,
        bg_grid_size=m.bg_grid_size,
        kernel_backend=m.kernel_backend,
    )


def read_state_dict(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file: its "model" entry, or the file itself if it is a state_dict.

    The file is unpickled with `weights_only=True` unless `trusted`: training checkpoints that hold other
    Python objects (optimiser state with custom classes, loggers) then need `trusted=True`.
    """
    path = Path(path)
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err):  # the pickle itself is broken, not refused by the weights-only loader
            raise ValueError(f"{path}: corrupt checkpoint ({str(err).splitlines()[0]})") from None
        raise ValueError(f"{path}: holds objects other than tensors and plain containers; if you trust the file, "
                         f"load it with trusted=True (infer.py: --trust_checkpoint) "
                         f"({str(err).splitlines()[0]})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile) as err:  # torch's zip reader raises RuntimeError
        raise ValueError(f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0]})") from None
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path}: expected a state_dict or a checkpoint with a 'model' state_dict")
    return dict(checkpoint)


def load_model(path: str | os.PathLike, *, config: str | os.PathLike | Config | None = None,
               map_location: str | torch.device = "cpu", trusted: bool = False) -> TarViS:
    """Build the model a checkpoint was trained as and load its weights (strict key and shape match).

    Args:
        path: the `.pth` file.
        config: the config, or its file; by default the `config.yaml` beside the checkpoint (our YAML or the
            original's).
        map_location: device of the returned model.
        trusted: unpickle arbitrary objects (see `read_state_dict`).

    Returns the model in eval mode.
    """
    path = Path(path)
    check_checkpoint_file(path)
    if not isinstance(config, Config):
        config = load_config(config) if config is not None else load_checkpoint_config(path)
    model = build_model(config)
    state_dict = read_state_dict(path, trusted=trusted)
    _load_strict(model, state_dict, path)
    return model.to(map_location).eval()


def _load_strict(model: TarViS, state_dict: Mapping[str, Any], path: Path) -> None:
    """load_state_dict(strict=True), with an error that lists what differs, a few keys at a time."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if state_dict[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        problems = [
            f"{len(items)} {what}: {items[:8]}{' ...' if len(items) > 8 else ''}"
            for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                ("shape mismatches", mismatched))
            if items
        ]
        raise ValueError(f"{path} does not fit the model its config describes; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
