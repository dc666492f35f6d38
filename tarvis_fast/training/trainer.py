"""The training loop (SPEC §5.1, §5.4, §5.6): micro-batches from a loader, gradient accumulation, AMP, clipping,
the LR schedule, checkpoints and logs, on one process or under torchrun.

    trainer = Trainer(model, cfg, model_dir, device=device, amp_dtype=torch.bfloat16)
    trainer.restore(checkpoint)          # optional: continue a run
    trainer.train(loader)                # until cfg.training.num_iterations or SIGTERM/SIGINT

The loader is any iterable of `(iteration, micro_step, TrainingBatch)` with an `accumulation_steps` attribute
(`tarvis_fast.data.loader.build_train_loader`'s `TrainLoader`, or a test's fake): `accumulation_steps`
micro-batches per iteration for this rank, every rank at the same (iteration, micro_step) running the same task.

Determinism: before each micro-step the global torch RNG is seeded from (seed, iteration, slot), slot =
micro_step * world_size + rank, the micro-batch's index in the global batch. Stochastic depth, the losses' point
sampling and the object encoder's mask subsampling then depend on nothing else, so a resumed run repeats an
uninterrupted one bit for bit, and N processes draw what one process accumulating N micro-batches draws.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from tarvis_fast.config import Config
from tarvis_fast.data.sample import TrainingBatch
from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.model import ObjectReferences, TarViS, padded_size
from tarvis_fast.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tarvis_fast.training.logs import TrainingLog, peak_memory_mib
from tarvis_fast.training.losses import TarvisCriterion
from tarvis_fast.training.optim import build_optimizer, build_scheduler, clip_gradients


class TrainLoader(Protocol):
    """What the trainer needs of a loader (see the module docstring)."""

    accumulation_steps: int

    def __iter__(self) -> Iterator[tuple[int, int, TrainingBatch]]: ...


def step_seed(seed: int, iteration: int, slot: int) -> int:
    """The torch seed of one micro-batch: a hash of the run's seed, the iteration and the global micro-batch slot."""
    return int(np.random.SeedSequence([seed, iteration, slot]).generate_state(1)[0])


def object_references(batch: TrainingBatch) -> ObjectReferences | None:
    """The network's VOS/PET references: each object's mask (VOS) or point (PET) on the clip's frame 0; a batch may
    give some objects by masks and the rest by points."""
    if not batch.task.guided_by_objects:
        return None
    device = batch.images.device
    masks, points = batch.reference_masks, batch.reference_points
    return ObjectReferences(
        masks=masks, mask_frames=None if masks is None else torch.zeros(1, dtype=torch.int64, device=device),
        points=points,
        point_frames=None if points is None else torch.zeros(points.shape[:2], dtype=torch.int64, device=device))


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors, and the tensors inside (frozen) dataclasses and tuples, moved to `device`."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_device(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, tuple):
        return tuple(to_device(item, device) for item in value)
    return value


Targets = InstanceTargets | PanopticTargets | ObjectTargets


def pad_targets(targets: Targets, size: tuple[int, int]) -> Targets:
    """`targets` padded right and bottom to `size` (H, W) as the original pads them (SPEC §2.1): masks with False
    (VOS/PET padding is background), the panoptic ignore mask with True.

    The model pads its input to a multiple of 64 and its logits cover that padded image, and the losses read
    logits and targets at the same normalised points, so the targets must cover the padded image too: unpadded,
    a 48 x 72 clip's targets are read as if stretched over the 64 x 128 of the logits."""
    def grow(x: Tensor, value: bool | int) -> Tensor:
        return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]), value=value)

    if isinstance(targets, ObjectTargets):
        return ObjectTargets(grow(targets.masks, False))
    instances = targets.instances if isinstance(targets, PanopticTargets) else targets
    instances = InstanceTargets(tuple(grow(masks, False) for masks in instances.masks), instances.classes)
    if isinstance(targets, InstanceTargets):
        return instances
    return PanopticTargets(instances, grow(targets.semantic, 0), grow(targets.ignore, True))


class StopRequest:
    """SIGTERM/SIGINT set a flag that the loop reads between iterations (it then saves a checkpoint and returns);
    a second signal stops at once, as the default handlers would."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Averages:
    """Sums of detached scalars over a display interval, read (and synchronised) only when displayed."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self, distributed: bool) -> dict[str, float]:
        """The means, over ranks too when distributed (every rank ran the same tasks, so has the same names)."""
        names = sorted(self.sums)
        if not names:
            return {}
        means = torch.stack([self.sums[name] / self.counts[name] for name in names])
        if distributed:
            dist.all_reduce(means)
            means /= dist.get_world_size()
        self.sums, self.counts = {}, {}
        return dict(zip(names, means.tolist()))


class Trainer:
    """Trains `model` as `cfg.training` says, writing checkpoints and logs into `model_dir`.

    Args:
        model: the network, on any device (it is moved to `device`).
        cfg: the run's config (training section: schedule, losses, checkpoint interval and count, checkpointing).
        model_dir: the run's folder (must exist; see `training.run_dir`).
        device: where to train; under torch.distributed, this process's device.
        amp_dtype: None for fp32, or torch.bfloat16 / torch.float16 to run the network under autocast (fp16 with
            a GradScaler).
        seed: the run's seed (see the module docstring).
        log: where to report; by default a `TrainingLog` on rank 0 (console, TensorBoard) made by `train`.
        display_interval: iterations between log lines.
    """

    def __init__(self, model: TarViS, cfg: Config, model_dir: Path, *, device: torch.device,
                 amp_dtype: torch.dtype | None = None, seed: int = 42, log: TrainingLog | None = None,
                 display_interval: int = 5) -> None:
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype}")
        self.cfg = cfg
        self.model_dir = Path(model_dir)
        self.device = device
        self.amp_dtype = amp_dtype
        self.seed = seed
        self.display_interval = display_interval
        self.log = log
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1

        self.model = model.to(device).train()
        self.model.set_grad_checkpointing(cfg.training.checkpointing)
        self.optimizer = build_optimizer(self.model, cfg.training)
        self.scheduler = build_scheduler(self.optimizer, cfg.training)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
        self.criterion = TarvisCriterion.from_config(cfg.training)
        self.iteration = 0  # completed iterations
        # Every task leaves some parameters unused (VIS the object encoder, VOS the instance queries, ...), so DDP
        # must look for them. DDP broadcasts rank 0's parameters here: every rank starts from the same weights.
        self.network: nn.Module = self.model
        if self.distributed:
            self.network = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )

    # -- checkpoints -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (`training.checkpoint`). A collective under torch.distributed: every rank's RNG state
        is gathered, so every rank must call it."""
        rng = [rng_state()]
        if self.distributed:
            rng = [None] * self.world_size
            dist.all_gather_object(rng, rng_state())
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": rng,
            "world_size": self.world_size,
        }

    def restore(self, path: Path) -> None:
        """Continue the run a checkpoint of ours was written by (same config; any number of processes, though
        only the same number restores every process's RNG state)."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        self.iteration = int(state["iteration"])
        if state.get("world_size") == self.world_size:
            set_rng_state(state["rng"][self.rank])

    def save(self) -> Path | None:
        """Write a checkpoint of the completed iterations (rank 0 writes; every rank must call)."""
        state = self.state_dict()
        if self.rank != 0:
            return None
        path = save_checkpoint(state, self.model_dir, self.iteration, self.cfg.training.max_ckpts_to_keep)
        if self.log is not None:
            self.log.message(f"saved checkpoint {path}")
        return path

    # -- the loop --------------------------------------------------------------------------------------------

    def micro_step(self, batch: TrainingBatch, iteration: int, micro_step: int, accumulation_steps: int) -> dict[str, Tensor]:
        """Forward and backward of one micro-batch; gradients accumulate. DDP all-reduces them only on the last
        micro-step of the iteration. Returns the detached named losses."""
        torch.manual_seed(step_seed(self.seed, iteration, micro_step * self.world_size + self.rank))
        batch = to_device(batch, self.device)
        last = micro_step == accumulation_steps - 1
        sync = nullcontext() if last or not self.distributed else self.network.no_sync()  # type: ignore[operator]
        with sync:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                output = self.network(batch.images, batch.task, objects=object_references(batch),
                                      dataset=None if batch.task.guided_by_objects else batch.dataset)
            # The losses cast half-precision logits to fp32 themselves; they run outside autocast.
            targets = pad_targets(batch.targets, padded_size(*batch.images.shape[-2:]))
            losses = self.criterion(output.layers, targets)
            self.scaler.scale(losses["TotalL"] / accumulation_steps).backward()
        return {name: value.detach() for name, value in losses.items()}

    def optimizer_step(self) -> Tensor:
        """Unscale (fp16), clip the full model's gradient norm, step AdamW and the schedule; returns the norm."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.model)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _agree_to_stop(self, requested: bool) -> bool:
        """Whether any rank was asked to stop: every rank must stop after the same iteration."""
        if not self.distributed:
            return requested
        flag = torch.tensor([float(requested)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def train(self, loader: TrainLoader) -> int:
        """Run the loader to its end (or to a SIGTERM/SIGINT); saves every `checkpoint_save_interval` iterations
        and at the end. Returns the number of completed iterations."""
        training = self.cfg.training
        accumulation = int(loader.accumulation_steps)
        own_log = self.log is None
        if own_log:
            self.log = TrainingLog(self.model_dir, self.iteration, training.num_iterations, enabled=self.rank == 0)
        averages = _Averages()
        timing = {"iteration": 0.0, "data": 0.0, "count": 0}
        grad_norm = torch.zeros((), device=self.device)
        stop = StopRequest()
        saved_at = self.iteration
        try:
            with stop.installed():
                started = time.perf_counter()
                batches = iter(loader)
                while self.iteration < training.num_iterations:
                    waited = time.perf_counter()
                    try:
                        iteration, micro, batch = next(batches)
                    except StopIteration:
                        break
                    timing["data"] += time.perf_counter() - waited
                    if iteration != self.iteration:
                        raise RuntimeError(f"the loader yielded iteration {iteration}, the trainer is at "
                                           f"{self.iteration} (was it built with start_iteration?)")
                    averages.add(self.micro_step(batch, iteration, micro, accumulation))
                    if micro < accumulation - 1:
                        continue
                    grad_norm = self.optimizer_step()
                    averages.add({"grad_norm": grad_norm})
                    self.iteration += 1
                    timing["iteration"] += time.perf_counter() - started
                    timing["count"] += 1
                    started = time.perf_counter()
                    self.log.advance()
                    if self.iteration % self.display_interval == 0 or self.iteration == training.num_iterations:
                        self._display(averages, timing)
                    stopping = self._agree_to_stop(stop.requested)
                    if stopping or self.iteration % training.checkpoint_save_interval == 0:
                        self.save()
                        saved_at = self.iteration
                    if stopping:
                        self.log.message(f"stopped by a signal after iteration {self.iteration}")
                        return self.iteration
            if saved_at != self.iteration:
                self.save()
            return self.iteration
        finally:
            if own_log:
                self.log.close()
                self.log = None

    def _display(self, averages: _Averages, timing: dict[str, float]) -> None:
        means = averages.pop(self.distributed)  # a collective: every rank displays at the same iterations
        count = max(timing["count"], 1)
        grad_norm = means.pop("grad_norm", math.nan)
        lrs = {group["name"]: group["lr"] for group in self.optimizer.param_groups}
        self.log.scalars(self.iteration, means, lrs, grad_norm, timing["iteration"] / count, timing["data"] / count,
                         peak_memory_mib(self.device))
        timing.update(iteration=0.0, data=0.0, count=0)
