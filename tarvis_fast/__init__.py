"""tarvis-fast: TarViS on today's PyTorch, with Triton kernels."""
from __future__ import annotations

from typing import Any

from tarvis_fast.tasks import Task

__all__ = ["Task", "VideoPredictor", "load_model"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import tarvis_fast.formats` and the like stay light.
    if name == "load_model":
        from tarvis_fast.model.build import load_model

        return load_model
    if name == "VideoPredictor":
        from tarvis_fast.inference.predictor import VideoPredictor

        return VideoPredictor
    raise AttributeError(f"module 'tarvis_fast' has no attribute {name!r}")
