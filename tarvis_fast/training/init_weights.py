"""Where a new training run's weights come from: a pre-training run (`--finetune_from`, SPEC §5.5), or ImageNet
weights for the backbone (SPEC §2.2), or, with a warning, nothing.

Backbone files users have, found under `$TARVIS_WORKSPACE_DIR/pretrained_backbones` by their release names or
named by `training.pretrained_backbone`:
- ResNet: torchvision's state_dict (`resnet50-*.pth`) or detectron2's `R-50.pkl` / `R-101.pkl` (numpy arrays
  under detectron2's names, which are ours);
  (`.pkl` files are unpickled, which runs code a malicious file holds: use files from their publishers only);
- Swin: the official releases (`swin_tiny_patch4_window7_224.pth`, `swin_large_patch4_window12_384_22k.pth`, ...)
  or Mask2Former's `.pkl` conversions of them. A relative-position table made for another window size is resized
  (bicubic over the (2w-1) x (2w-1) offsets, per head), as Swin does when fine-tuning at another window.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tarvis_fast.config import Config, load_config
from tarvis_fast.datasets import WORKSPACE_ENV
from tarvis_fast.model import TarViS, semantic_classes
from tarvis_fast.model.backbones import ResNet, SwinTransformer, load_imagenet_weights
from tarvis_fast.model.build import read_state_dict
from tarvis_fast.model.queries import semantic_query_layout

SEMANTIC_QUERIES = "embedding_container._semantic_queries"
# SPEC §5.5: the KITTI-STEP and Cityscapes-VPS classes (train ids 0..18) are Cityscapes classes; their semantic
# queries start from the pre-trained Cityscapes queries of these Cityscapes ids.
CITYSCAPES_ID_OF_TRAIN_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_TRAIN_ID_DATASETS = ("KITTI_STEP", "CITYSCAPES_VPS")

# Release file names per backbone, in order of preference.
BACKBONE_FILES: dict[str, tuple[str, ...]] = {
    "ResNet18": ("resnet18.pth", "resnet18-f37072fd.pth"),
    "ResNet34": ("resnet34.pth", "resnet34-b627a593.pth"),
    "ResNet50": ("R-50.pkl", "resnet50.pth", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    "ResNet101": ("R-101.pkl", "resnet101.pth", "resnet101-63fe2227.pth"),
    "SwinTiny": ("swin_tiny_patch4_window7_224.pkl", "swin_tiny_patch4_window7_224.pth"),
    "SwinSmall": ("swin_small_patch4_window7_224.pkl", "swin_small_patch4_window7_224.pth"),
    "SwinBase": ("swin_base_patch4_window12_384_22k.pkl", "swin_base_patch4_window12_384_22k.pth"),
    "SwinLarge": ("swin_large_patch4_window12_384_22k.pkl", "swin_large_patch4_window12_384_22k.pth"),
}


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning (SPEC §5.5)


def finetune_state_dict(pretrained: Mapping[str, Tensor], target: Mapping[str, Tensor],
                        pretrain_classes: Mapping[str, int], finetune_classes: Mapping[str, int]) -> dict[str, Tensor]:
    """The weights a fine-tuning run starts from: every tensor of `pretrained` except the semantic query table,
    whose shape follows the datasets. Of that table, row 0 (the shared positional embedding) is copied, and the
    KITTI-STEP and Cityscapes-VPS rows take the pre-trained Cityscapes rows of their classes; every other row
    keeps `target`'s (random) initialisation. With the same datasets on both sides the table is copied whole.

    Raises ValueError if any other key or shape differs.
    """
    others = set(target) - {SEMANTIC_QUERIES}
    missing = sorted(others - set(pretrained))
    unexpected = sorted(set(pretrained) - set(target))
    mismatched = sorted(k for k in others & set(pretrained) if pretrained[k].shape != target[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(f"the pre-trained checkpoint does not fit the model: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, other shapes {mismatched[:5]}")
    state = {key: pretrained[key] for key in others}
    source = pretrained[SEMANTIC_QUERIES]
    if dict(pretrain_classes) == dict(finetune_classes):
        state[SEMANTIC_QUERIES] = source
        return state
    queries = target[SEMANTIC_QUERIES].clone()
    queries[0] = source[0]
    source_layout = semantic_query_layout(pretrain_classes)
    if "CITYSCAPES" in source_layout:
        cityscapes_start = source_layout["CITYSCAPES"][0]
        rows = torch.tensor(CITYSCAPES_ID_OF_TRAIN_ID) + cityscapes_start
        for name, (start, end) in semantic_query_layout(finetune_classes).items():
            if name in CITYSCAPES_TRAIN_ID_DATASETS:
                if end - start != len(rows):
                    raise ValueError(f"{name} has {end - start} classes; the Cityscapes transfer needs {len(rows)}")
                queries[start:end] = source[rows]
    state[SEMANTIC_QUERIES] = queries
    return state


def load_finetune_start(model: TarViS, checkpoint: Path, *, trusted: bool = False) -> None:
    """Load a pre-training checkpoint (ours or a released one, with its config.yaml beside it) into `model`;
    `trusted` unpickles any object the file holds (see `read_state_dict`)."""
    pretrain_cfg = load_config(checkpoint.parent / "config.yaml")
    queries = model.embedding_container
    finetune_classes = {name: queries.num_classes(name) for name in queries.datasets}
    state = finetune_state_dict(read_state_dict(checkpoint, trusted=trusted), model.state_dict(), semantic_classes(pretrain_cfg),
                                finetune_classes)
    model.load_state_dict(state)


# ----------------------------------------------------------------------------------------------------------
# ImageNet backbones


def find_pretrained_backbone(backbone: str, configured: str | None = None) -> Path | None:
    """`configured` if given (it must exist), else the first release file of `backbone` found in
    `$TARVIS_WORKSPACE_DIR/pretrained_backbones`, else None."""
    if configured is not None:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FileNotFoundError(2, "pretrained backbone not found (training.pretrained_backbone)", str(path))
        return path
    workspace = os.environ.get(WORKSPACE_ENV)
    if not workspace:
        return None
    folder = Path(workspace) / "pretrained_backbones"
    return next((folder / name for name in BACKBONE_FILES.get(backbone, ()) if (folder / name).is_file()), None)


def read_backbone_checkpoint(path: Path) -> dict[str, Tensor]:
    """A backbone checkpoint as a flat {name: tensor}: `.pkl` files are detectron2/Mask2Former pickles of numpy
    arrays (under "model" or at the top), `.pth` files torch checkpoints (the state_dict under "model" or at the
    top)."""
    if path.suffix == ".pkl":
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")  # detectron2 writes them from Python 2 era code
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    data = data.get("model", data) if isinstance(data, Mapping) else data
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: not a backbone checkpoint (expected a mapping of weights)")
    return {key: torch.as_tensor(value) if isinstance(value, np.ndarray) else value
            for key, value in data.items() if isinstance(value, (np.ndarray, Tensor))}


def resize_relative_position_tables(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Swin relative-position bias tables ((2w-1)^2, heads) resized to the target's window where they differ."""
    out = dict(state)
    for key, table in state.items():
        if not key.endswith("relative_position_bias_table") or key not in target:
            continue
        wanted = target[key].shape
        if table.shape == wanted:
            continue
        side, new_side = round(table.shape[0] ** 0.5), round(wanted[0] ** 0.5)
        grid = table.float().T.reshape(1, table.shape[1], side, side)
        resized = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
        out[key] = resized.reshape(table.shape[1], -1).T.to(table.dtype).contiguous()
    return out


def load_pretrained_backbone(backbone: ResNet | SwinTransformer, path: Path) -> None:
    """Load ImageNet weights from one of the files of the module docstring into `backbone`."""
    state = read_backbone_checkpoint(path)
    if isinstance(backbone, SwinTransformer):
        load_imagenet_weights(backbone, resize_relative_position_tables(state, backbone.state_dict()))
    elif any(key.startswith("layer1.") for key in state):  # torchvision names
        load_imagenet_weights(backbone, state)
    else:  # detectron2 names, which are ours; its classifier is "fc1000"
        state = {key: value for key, value in state.items() if not key.startswith("fc1000.")}
        missing = sorted(set(backbone.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(backbone.state_dict()))
        if missing or unexpected:
            raise ValueError(f"{path}: does not fit {type(backbone).__name__}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        backbone.load_state_dict(state)


# ----------------------------------------------------------------------------------------------------------


def init_for_training(model: TarViS, cfg: Config, finetune_checkpoint: Path | None, *,
                      trust_checkpoint: bool = False) -> str:
    """Initialise a new run's model in place; returns a line saying where the weights came from (and warns when
    the backbone starts from random weights)."""
    if finetune_checkpoint is not None:
        load_finetune_start(model, finetune_checkpoint, trusted=trust_checkpoint)
        return f"fine-tuning from {finetune_checkpoint}"
    if not cfg.training.pretraining:
        warnings.warn("a fine-tuning config (training.pretraining: false) without --finetune_from: everything but "
                      "the backbone starts from random weights", stacklevel=2)
    backbone: Any = model.backbone.backbone
    if not isinstance(backbone, (ResNet, SwinTransformer)):
        return "training from scratch (a custom backbone)"
    if isinstance(backbone, ResNet) and backbone.norm != "FrozenBN":  # chosen for training from scratch
        return f"training from scratch: {cfg.model.backbone} with model.backbone_norm {backbone.norm}"
    path = find_pretrained_backbone(cfg.model.backbone, cfg.training.pretrained_backbone)
    if path is None:
        warnings.warn(f"no ImageNet weights for {cfg.model.backbone} (set training.pretrained_backbone or place one "
                      f"of {', '.join(BACKBONE_FILES[cfg.model.backbone])} in ${WORKSPACE_ENV}/pretrained_backbones): "
                      "the backbone starts from random weights", stacklevel=2)
        return f"training from scratch: no pretrained {cfg.model.backbone} weights found"
    load_pretrained_backbone(backbone, path)
    return f"backbone {cfg.model.backbone} from {path}"
