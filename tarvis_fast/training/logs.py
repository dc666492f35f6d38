"""What a training run shows and records (on rank 0 only; the other ranks get a `TrainingLog(enabled=False)`).

- a console line every `display_interval` iterations: losses, LR, gradient norm, iteration and data time, ETA,
  peak memory; also appended to `model_dir/logs/out.log`;
- a tqdm progress bar on stderr;
- TensorBoard scalars under `model_dir/logs/tensorboard`: every loss (`loss/<name>`), `lr/<group>`,
  `grad_norm`, `time/iteration`, `time/data`, `memory/peak_mib`;
- the same scalars in Weights & Biases when a project is named and wandb is installed.
"""
from __future__ import annotations

import datetime
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm import tqdm


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process: allocated CUDA memory on a GPU, the resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class TrainingLog:
    """Console, file, progress bar, TensorBoard and optional wandb, for iterations start..total.

    Args:
        model_dir: the run's folder; logs go to `model_dir/logs`.
        start, total: the first iteration of this session and the run's number of iterations.
        enabled: False on every rank but 0 (then every method does nothing).
        tensorboard: write TensorBoard events (needs the `tensorboard` package).
        wandb_project: also log to this wandb project (needs `wandb`); None: no wandb.
        progress_bar: show a tqdm bar.
    """

    def __init__(self, model_dir: Path, start: int, total: int, *, enabled: bool = True, tensorboard: bool = True,
                 wandb_project: str | None = None, progress_bar: bool = True) -> None:
        self.enabled = enabled
        self.start, self.total = start, total
        self._session_start = time.perf_counter()
        self._writer = self._wandb = self._bar = self._file = None
        if not enabled:
            return
        log_dir = model_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(log_dir / "out.log", "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # an optional dependency (pip install tarvis-fast[tensorboard])
                self.message("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            else:
                self._writer = SummaryWriter(str(log_dir / "tensorboard"))
        if wandb_project is not None:
            import wandb  # the command line checks that it is installed

            self._wandb = wandb.init(project=wandb_project, dir=str(log_dir), name=model_dir.name, resume="allow")
        if progress_bar:
            self._bar = tqdm(total=total, initial=start, desc="training", dynamic_ncols=True, file=sys.stderr)

    def message(self, text: str) -> None:
        """A line on the console (above the bar) and in out.log."""
        if not self.enabled:
            return
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        line = f"[{stamp}] {text}"
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
        self._file.write(line + "\n")
        self._file.flush()

    def advance(self) -> None:
        """One iteration done."""
        if self._bar is not None:
            self._bar.update(1)

    def eta_seconds(self, iteration: int) -> float:
        """Remaining time at this session's mean speed; `iteration` is the number of completed iterations."""
        done = iteration - self.start
        return (time.perf_counter() - self._session_start) / max(done, 1) * (self.total - iteration)

    def scalars(self, iteration: int, losses: Mapping[str, float], lrs: Mapping[str, float], grad_norm: float,
                iteration_time: float, data_time: float, peak_mib: float) -> None:
        """Log one display interval's averages at `iteration` (completed iterations)."""
        if not self.enabled:
            return
        eta = datetime.timedelta(seconds=round(self.eta_seconds(iteration)))
        loss_text = "  ".join(f"{name} {value:.4f}" for name, value in losses.items())
        lr_text = " ".join(f"{value:.2e}" for value in dict.fromkeys(lrs.values()))
        self.message(f"it {iteration}/{self.total}  {loss_text}  lr {lr_text}  grad_norm {grad_norm:.4f}  "
                     f"time {iteration_time:.3f}s (data {data_time:.3f}s)  eta {eta}  mem {peak_mib:.0f} MiB")
        values = {f"loss/{name}": value for name, value in losses.items()}
        values.update({f"lr/{name}": value for name, value in lrs.items()})
        values.update({"grad_norm": grad_norm, "time/iteration": iteration_time, "time/data": data_time,
                       "memory/peak_mib": peak_mib})
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, iteration)
            self._writer.flush()
        if self._wandb is not None:
            self._wandb.log(values, step=iteration)

    def close(self) -> None:
        for resource_ in (self._bar, self._writer, self._file):
            if resource_ is not None:
                resource_.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._bar = self._writer = self._file = self._wandb = None
