"""Training checkpoints: what a run needs to continue bit for bit, written so that a kill at any moment leaves
either the previous checkpoint or the new one, never half a file.

A run's folder (`training.run_dir`) keeps the newest `keep` of them, as `{iteration:06d}.pth`. Each is a dict:

    model         the network's state_dict (what `tarvis_fast.model.load_model` and `infer.py` read)
    optimizer     AdamW's state_dict          scheduler    the LR schedule's state_dict
    grad_scaler   the fp16 GradScaler's state_dict (disabled and empty without fp16 AMP)
    iteration     completed iterations: the run continues with this one
    rng           per rank: the torch (CPU and CUDA), numpy and Python RNG states
    world_size    processes of the run that wrote it

Everything is tensors and plain containers, so the file loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.training.run_dir import checkpoint_path, list_checkpoints


def save_checkpoint(state: Mapping[str, Any], model_dir: Path, iteration: int, keep: int) -> Path:
    """Write `state` as `{iteration:06d}.pth` atomically, then delete all but the newest `keep` checkpoints."""
    path = checkpoint_path(model_dir, iteration)
    with atomic_open(path, "wb") as handle:
        torch.save(dict(state), handle)
    for old in list_checkpoints(model_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint of ours, on the CPU."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"model", "optimizer", "scheduler", "grad_scaler", "iteration", "rng"} - set(state)
    if missing:
        raise ValueError(f"{path}: not a tarvis-fast training checkpoint (no {', '.join(sorted(missing))}); "
                         "to start from a model's weights, use --finetune_from")
    return state


# ----------------------------------------------------------------------------------------------------------
# RNG states


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process, as tensors and plain values."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` captured (the CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
                         numpy["cached_gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
