"""The parameter-count script against the parameter shapes of SPEC §8."""
from __future__ import annotations

import math

import pytest

from tarvis_fast.model.params import main

from .checkpoint_spec import expected_keys


def test_resnet50_total_matches_the_checkpoint_layout(capsys: pytest.CaptureFixture[str]) -> None:
    # Every SPEC §8 tensor is a parameter except the buffers: frozen batch norm (all of the ResNet's norms),
    # pixel_mean/std and the background grid size.
    keys = expected_keys("ResNet50", 228)
    buffers = [k for k in keys if k.startswith("backbone.backbone.") and ".norm." in k]
    buffers += ["pixel_mean", "pixel_std", "vos_query_extractor.bg_grid_size"]
    total = sum(math.prod(shape) for key, shape in keys.items() if key not in buffers)

    assert main(["--backbones", "ResNet50"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ResNet50 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[-1] == f"{total / 1e6:.2f}M"
    assert sum(float(c[:-1]) for c in cells[1:-1]) == pytest.approx(total / 1e6, abs=0.03)
