"""CPU benchmark of one training iteration: time, data time and peak memory, with and without activation
checkpointing.

    pytest bench/test_bench_train.py --benchmark-enable --benchmark-only -s

Model: the fine-tuning configuration with ResNet-50 (random weights, full-size neck, decoder and 128 instance
queries), trained by `tarvis_fast.training.Trainer` on one fake clip per iteration (T = 3, 128 x 128; VIS with
YouTube-VIS's 40 classes, or VOS with 2 mask objects), fp32. Rows (extra_info):
- "data_s": time to make the batch (the fake generator of tests/training, not the real data pipeline);
- "peak_mib": the most that activations, temporaries, gradients and optimiser state hold at once during one
  iteration (PyTorch's MemTracker; weights and inputs excluded);
- "saved_mib": what the forward keeps for the backward pass (saved-tensor hooks): the part activation
  checkpointing trades for recomputation.
Timings are reported, never asserted.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from training.fake_data import fake_sample  # noqa: E402

from tarvis_fast.config import load_config  # noqa: E402
from tarvis_fast.data.sample import collate  # noqa: E402
from tarvis_fast.model import build_model  # noqa: E402
from tarvis_fast.tasks import Task  # noqa: E402
from tarvis_fast.training.trainer import Trainer  # noqa: E402

CPU = torch.device("cpu")
FRAMES, SIZE = 3, 128
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune_resnet50_swin-tiny.yaml"


def make_trainer(tmp_path: Path, checkpointing: bool) -> Trainer:
    cfg = load_config(CONFIG, ["--cfg.model.backbone", "ResNet50", "--cfg.training.checkpointing",
                               str(checkpointing).lower()])
    torch.manual_seed(0)
    return Trainer(build_model(cfg), cfg, tmp_path, device=CPU)


def make_batch(task: Task):
    started = time.perf_counter()
    batch = collate([fake_sample(task, torch.Generator().manual_seed(0), FRAMES, SIZE)])
    return batch, time.perf_counter() - started


def iteration(trainer: Trainer, batch) -> None:
    trainer.micro_step(batch, 0, 0, 1)
    trainer.optimizer_step()


def saved_mib(trainer: Trainer, batch) -> float:
    """MiB of tensors the forward and losses save for the backward pass (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        trainer.micro_step(batch, 0, 0, 1)
    trainer.optimizer.zero_grad(set_to_none=True)
    return sum(storages.values()) / 2**20


def peak_mib(trainer: Trainer, batch) -> float:
    tracker = MemTracker()
    tracker.track_external(trainer.model, trainer.optimizer)
    with tracker:
        iteration(trainer, batch)
    peak = tracker.get_tracker_snapshot("peak")[CPU]
    return sum(peak[kind] for kind in (_MemRefType.ACT, _MemRefType.TEMP, _MemRefType.GRAD, _MemRefType.OPT)) / 2**20


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("task", [Task.VIS, Task.VOS], ids=["VIS", "VOS"])
@pytest.mark.benchmark(group="train cpu iteration")
def test_train_iteration(benchmark, tmp_path, task: Task, checkpointing: bool) -> None:
    trainer = make_trainer(tmp_path, checkpointing)
    batch, data_s = make_batch(task)
    iteration(trainer, batch)  # warm-up: the optimiser's state is created on its first step
    benchmark.extra_info.update(data_s=data_s, saved_mib=saved_mib(trainer, batch), peak_mib=peak_mib(trainer, batch))
    benchmark.pedantic(iteration, args=(trainer, batch), rounds=2, iterations=1)
    print(f"\n{task.short_name} checkpointing={checkpointing}: " +
          ", ".join(f"{k} {v:.3f}" for k, v in benchmark.extra_info.items()))
