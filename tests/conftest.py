"""Test set-up shared by every test.

Without a GPU the Triton kernels run under the interpreter. `TRITON_INTERPRET` must be set before any
`@triton.jit` decorator runs, i.e. before `tarvis_fast.kernels` is imported, which is why it happens here,
at collection time.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TARVIS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data in ../shared/data (absent from a user's fresh clone: such tests skip)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set TARVIS_SHARED_DATA or place shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def davis_clip(shared_data: Path) -> Path:
    """The DAVIS-2017 sequence horsejump-high: JPEGImages/, osvos/ and rvos/ folders."""
    root = shared_data / "davis"
    if not (root / "JPEGImages" / "horsejump-high").is_dir():
        pytest.skip(f"DAVIS clip horsejump-high not found under {root}")
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
