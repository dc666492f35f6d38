"""CPU benchmark of loss + matching for all decoder outputs: ours (layers batched) against the per-layer loop
(`cases_losses.per_layer_losses`, the original's way), forward and forward + backward.

    pytest bench/test_bench_losses.py --benchmark-enable --benchmark-only

Timed at the original's training shapes (`cases_losses.SHAPES`: 10 outputs, T = 3, 512x512 targets, 128x128
logits, Q = 128, 12544 points; VIS with 40 classes, VOS with 4 objects), fp32. With --benchmark-disable (the
default) every timed test runs once on a small shape instead, so that the file stays quick. The equality of the
two implementations is checked on small float64 inputs with the same points.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from cases_losses import SHAPES, Shape, batched_losses, make_inputs, per_layer_losses, total

from tarvis_fast.training.point_sampling import RandomPoints, ReplayPoints

CPU = torch.device("cpu")
TIMED = {shape.task: shape for shape in SHAPES if shape.task in ("vis", "vos")}


def small(shape: Shape) -> Shape:
    return replace(shape, layers=3, batch=2, queries=8, height=64, width=96, classes=5, instances=3,
                   num_points=200, semantic_points=300)


class KeepPoints(RandomPoints):
    """Draws points and keeps them, so that another implementation can be fed the same."""

    def __init__(self) -> None:
        super().__init__(torch.Generator().manual_seed(0))
        self.drawn: dict[str, torch.Tensor] = {}

    def __call__(self, name, shape, dtype, device):
        self.drawn[name] = super().__call__(name, shape, dtype, device)
        return self.drawn[name]


@pytest.mark.parametrize("shape", [small(s) for s in SHAPES], ids=lambda s: s.task)
def test_batched_equals_per_layer_loop(shape: Shape) -> None:
    layers, targets = make_inputs(shape, torch.float64, CPU)
    points = KeepPoints()
    ours = batched_losses(layers, targets, shape.config(), shape.num_points, points)
    reference = per_layer_losses(layers, targets, shape.config(), shape.num_points, ReplayPoints(points.drawn))
    assert set(reference) <= set(ours)
    for key, value in reference.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-12, msg=key)


IMPLS = {"ours": batched_losses, "per-layer loop": per_layer_losses}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("task", TIMED)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_loss_and_matching(benchmark, task: str, impl: str, backward: bool) -> None:
    benchmark.group = f"losses {task} {'fwd+bwd' if backward else 'fwd'}"
    shape = small(TIMED[task]) if benchmark.disabled else TIMED[task]
    layers, targets = make_inputs(shape, torch.float32, CPU, requires_grad=backward)
    inputs = [t for layer in layers for t in vars(layer).values()]
    fn, source = IMPLS[impl], RandomPoints(torch.Generator().manual_seed(0))

    def run():
        if not backward:
            with torch.no_grad():
                return fn(layers, targets, shape.config(), shape.num_points, source)
        return torch.autograd.grad(total(fn(layers, targets, shape.config(), shape.num_points, source)), inputs,
                                   allow_unused=True)

    assert benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1) is not None
