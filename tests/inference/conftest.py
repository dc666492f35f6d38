"""Fixtures shared by the inference tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.checkpoint import save_small_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A ResNet-50 TarViS with a narrow, shallow head: the smallest model `load_model` can build from a config."""
    return save_small_checkpoint(tmp_path_factory.mktemp("checkpoint"))
