"""A training run's folder (`--model_dir`): its config and checkpoint names, and the checks a command line runs
before anything expensive (this module imports no torch).

    model_dir/config.yaml        the run's whole config, written once at the start
    model_dir/NNNNNN.pth         checkpoints, by completed iteration (`training.checkpoint`)
    model_dir/logs/              console log and TensorBoard events (`training.logging`)
"""
from __future__ import annotations

import re
from pathlib import Path

CONFIG_NAME = "config.yaml"
_CHECKPOINT_NAME = re.compile(r"(\d{6,})\.pth")


def checkpoint_path(model_dir: Path, iteration: int) -> Path:
    return model_dir / f"{iteration:06d}.pth"


def list_checkpoints(model_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first (by iteration)."""
    found = [(int(m[1]), p) for p in model_dir.glob("*.pth") if (m := _CHECKPOINT_NAME.fullmatch(p.name))]
    return [path for _, path in sorted(found)]


def check_new_model_dir(model_dir: Path) -> None:
    """A new run needs a folder that does not exist or is empty: a user's existing files are never overwritten."""
    if model_dir.exists() and not model_dir.is_dir():
        raise ValueError(f"{model_dir}: --model_dir exists and is not a folder")
    if model_dir.is_dir():
        contents = sorted(p.name for p in model_dir.iterdir())
        if contents:
            hint = ("it holds another run; continue it with --restore_session, or choose a new folder"
                    if CONFIG_NAME in contents or list_checkpoints(model_dir)
                    else f"it is not empty ({', '.join(contents[:5])}{', ...' if len(contents) > 5 else ''}); "
                         "choose a new or empty folder")
            raise ValueError(f"{model_dir}: {hint}")


def resolve_restore_path(path: Path) -> Path:
    """`--restore_session` takes a checkpoint, or a run's folder (then its newest checkpoint)."""
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise ValueError(f"{path}: --restore_session: the folder holds no checkpoint (NNNNNN.pth)")
        path = found[-1]
    elif not path.is_file():
        raise ValueError(f"{path}: --restore_session: no such checkpoint")
    if not (path.parent / CONFIG_NAME).is_file():
        raise ValueError(f"{path.parent / CONFIG_NAME}: --restore_session: the run's config is missing")
    return path


def remove_stale_temporaries(model_dir: Path) -> None:
    """Delete the hidden temporary files that a run killed while writing a checkpoint leaves behind."""
    for tmp in model_dir.glob(".*.pth"):
        tmp.unlink(missing_ok=True)

