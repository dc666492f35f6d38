"""A small deterministic stand-in for `tarvis_fast.data.loader.build_train_loader`: random clips of boxes at
T = 2, 64 x 64, for the four tasks, with the same signature and iteration contract.

The batch of one (iteration, slot), slot = micro_step * world_size + rank, depends on (seed, iteration, slot) only,
so one process accumulating N micro-batches sees what N processes see. The task changes every `SLOTS_PER_TASK`
slots (a multiple of the world sizes the tests use, so that all ranks of a micro-step run one task, as the real
sampler guarantees), and cycles through VIS, VPS, VOS and PET; PET batches of odd iterations give their first object
by its mask and the second by its point, as the real loader mixes them. Every VIS/VPS sample has the same number of
instances: the instance losses normalise by the count averaged over ranks, which only then equals the count
seen by one process.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from tarvis_fast.config import Config
from tarvis_fast.data.sample import ClipSample, TrainingBatch, collate
from tarvis_fast.tasks import Task

FRAMES, SIZE = 2, 64
SLOTS_PER_TASK = 2
INSTANCES = 2
DATASETS = {Task.VIS: ("YOUTUBE_VIS", 40), Task.VPS: ("KITTI_STEP", 19), Task.VOS: ("DAVIS", 0),
            Task.PET: ("BURST", 0)}
TASK_CYCLE = (Task.VIS, Task.VPS, Task.VOS, Task.PET)


def _boxes(generator: torch.Generator, count: int, frames: int, size: int) -> torch.Tensor:
    """(count, frames, size, size) bool: each object a random box of 12..32 pixels, moving a little per frame."""
    masks = torch.zeros(count, frames, size, size, dtype=torch.bool)
    for n in range(count):
        y, x = torch.randint(0, size - 32 - 2 * frames, (2,), generator=generator).tolist()
        h, w = torch.randint(12, 32, (2,), generator=generator).tolist()
        for t in range(frames):
            masks[n, t, y + 2 * t : y + 2 * t + h, x + t : x + t + w] = True
    return masks


def fake_sample(task: Task, generator: torch.Generator, frames: int = FRAMES, size: int = SIZE) -> ClipSample:
    """One random clip of `task` (frames x size x size)."""
    dataset, num_classes = DATASETS[task]
    images = torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8, generator=generator)
    masks = _boxes(generator, INSTANCES, frames, size)
    if task.guided_by_objects:
        points = None
        if task is Task.PET:  # a pixel centre inside each object on frame 0
            points = torch.stack([(m[0].nonzero().float().mean(0).round() + 0.5) / size for m in masks])
        return ClipSample(dataset, task, images, masks, points=points)
    classes = torch.randint(1, num_classes + 1, (INSTANCES,), generator=generator)
    if task is Task.VIS:
        return ClipSample(dataset, task, images, masks, classes=classes)
    semantic = torch.randint(0, num_classes, (1,), generator=generator).expand(frames, size, size).clone()
    for mask, cls in zip(masks, classes):
        semantic[mask] = cls - 1
    ignore = torch.zeros(frames, size, size, dtype=torch.bool)
    ignore[:, :8] = True  # a void strip along the top
    return ClipSample(dataset, task, images, masks, classes=classes, semantic=semantic, ignore=ignore)


def fake_batch(seed: int, iteration: int, slot: int, micro_batch_size: int) -> TrainingBatch:
    generator = torch.Generator().manual_seed(hash((seed, iteration, slot)) % 2**62)
    task = TASK_CYCLE[(iteration * 3 + slot // SLOTS_PER_TASK) % len(TASK_CYCLE)]
    mixed = task is Task.PET and iteration % 2
    return collate([fake_sample(task, generator) for _ in range(micro_batch_size)],
                   num_point_objects=INSTANCES - 1 if mixed else None)


class FakeTrainLoader:
    """`build_train_loader`'s contract on fake data (see the module docstring)."""

    def __init__(self, cfg: Config, *, rank: int, world_size: int, micro_batch_size: int, start_iteration: int = 0,
                 seed: int = 42, num_workers: int = 0) -> None:
        training = cfg.training
        if training.batch_size % (world_size * micro_batch_size):
            raise ValueError(f"batch_size {training.batch_size} is not divisible by {world_size} x {micro_batch_size}")
        self.accumulation_steps = training.batch_size // (world_size * micro_batch_size)
        self.rank, self.world_size, self.micro_batch_size = rank, world_size, micro_batch_size
        self.start_iteration, self.num_iterations, self.seed = start_iteration, training.num_iterations, seed

    def __iter__(self) -> Iterator[tuple[int, int, TrainingBatch]]:
        for iteration in range(self.start_iteration, self.num_iterations):
            for micro in range(self.accumulation_steps):
                slot = micro * self.world_size + self.rank
                yield iteration, micro, fake_batch(self.seed, iteration, slot, self.micro_batch_size)
