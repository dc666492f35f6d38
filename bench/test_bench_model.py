"""CPU benchmark of the whole network: forward time per task, eager and torch.compile'd, and peak memory.

    pytest bench/test_bench_model.py --benchmark-enable --benchmark-only

Model: the fine-tuning configuration with ResNet-50 (random weights), eval mode, no autograd, final decoder
layer only, on one 2-frame 128x192 clip (the GPU report in cases_model.py runs the benchmarks' real sizes).
Tasks: VIS (YouTube-VIS, 40 classes), VPS (KITTI-STEP, 19 classes), VOS (2 objects from masks, 8 queries
each) and PET (2 objects from points).

Eager and compiled side by side (group "model cpu fwd VIS"): the compiled row is VIS with the network compiled
as `infer.py --compile` does it (`compile_model`: Inductor on each block, `tarvis_fast/model/compile.py`; on a CPU
the neck's deformable layers stay eager, see `CPU_EAGER_TYPES` there). Its first call, which compiles (cold unless `TORCHINDUCTOR_CACHE_DIR` holds an earlier run's code), is not timed; its
duration is in extra_info as "first_call_s". Peak memory is the most that the tensors one eager forward creates
hold at once (PyTorch's MemTracker, weights and inputs excluded); it is in each row's extra_info as "peak_mib".
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

sys.path.insert(0, str(Path(__file__).parent))
from cases_model import Clip, bench_model  # noqa: E402

from tarvis_fast.inference.runner import _no_duck_sizing, compile_model  # noqa: E402
from tarvis_fast.model import Task  # noqa: E402

CPU = torch.device("cpu")
CLIPS = {
    "VIS": Clip("VIS", Task.VIS, 2, 128, 192, dataset="YOUTUBE_VIS"),
    "VPS": Clip("VPS", Task.VPS, 2, 128, 192, dataset="KITTI_STEP"),
    "VOS": Clip("VOS", Task.VOS, 2, 128, 192, mask_objects=2),
    "PET": Clip("PET", Task.VOS, 2, 128, 192, point_objects=2),
}


def _model() -> torch.nn.Module:
    return bench_model("ResNet50", "auto", "cpu").eval()


def peak_mib(model: torch.nn.Module, inputs: dict) -> float:
    """MiB held at the peak of one forward by the tensors it creates."""
    tracker = MemTracker()
    tracker.track_external(model)
    with torch.no_grad(), tracker:
        model(**inputs)
    peak = tracker.get_tracker_snapshot("peak")[CPU]
    return (peak[_MemRefType.ACT] + peak[_MemRefType.TEMP]) / 2**20


@pytest.mark.parametrize("task", list(CLIPS))
def test_forward_eager(benchmark, task: str) -> None:
    benchmark.group = "model cpu fwd VIS" if task == "VIS" else "model cpu fwd, eager"
    model, inputs = _model(), CLIPS[task].inputs(CPU)
    benchmark.extra_info["peak_mib"] = peak_mib(model, inputs)
    with torch.no_grad():
        final = benchmark(lambda: model(**inputs)).final
    logits = final.object_logits if task in ("VOS", "PET") else final.mask_logits
    assert logits.shape[-3:] == (2, 32, 48)


@pytest.mark.benchmark(group="model cpu fwd VIS")
def test_forward_compiled_vis(benchmark) -> None:
    model, inputs = _model(), CLIPS["VIS"].inputs(CPU)
    compiled = copy.deepcopy(model)  # compiled in place; the cached eager model stays eager
    compile_model(compiled)
    with torch.no_grad(), _no_duck_sizing():
        expected = model(**inputs).final
        started = time.perf_counter()
        compiled(**inputs)  # compiles
        benchmark.extra_info["first_call_s"] = time.perf_counter() - started
        out = benchmark(lambda: compiled(**inputs)).final
    torch.testing.assert_close(out.class_logits, expected.class_logits, rtol=1e-3, atol=1e-3)
