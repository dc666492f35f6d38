"""The training loader: which dataset and task each micro-batch comes from, and the micro-batches themselves.

    loader = build_train_loader(cfg, rank=r, world_size=w, micro_batch_size=1, start_iteration=k, seed=42)
    for iteration, micro_step, batch in loader:      # micro_step in range(loader.accumulation_steps)
        ...
    print(loader.report())                           # unusable samples that were retried

The task-aware schedule (SPEC §5.2): iterations come in chunks of `sample_chunking_factor`; a chunk draws one dataset
(by `dataset_weights`), one task (its type; image datasets when pre-training draw it by `pretrain_task_weights`) and,
for VOS of a video dataset, one object count (a pseudo-video takes every object of its reference frame, up to
32 // queries per object, and a micro-batch keeps as many as its clip with the fewest, as the original). Every rank
and micro-step of the chunk uses them. PET is trained inside VOS batches, as the original's object encoder does it:
each micro-step, every object is given by its point instead of its mask with `point_vos_task_sample_likelihood`, and
the batch gives that many of its last objects by their points (the same count on every rank). A clip is drawn with
a generator seeded by (seed, iteration, micro_step, rank, index in the micro-batch) alone, so resuming at iteration
k, or changing the number of workers, gives the same data.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tarvis_fast.config import Config
from tarvis_fast.data.clips import ClipSource
from tarvis_fast.data.images import trim_objects
from tarvis_fast.data.sample import ClipSample, TrainingBatch, collate
from tarvis_fast.data.sources import build_source
from tarvis_fast.tasks import Task

_PLAN_STREAM, _SAMPLE_STREAM, _POINT_STREAM = 1, 2, 3  # keep the random streams of the schedule apart
MAX_POINT_FLAGS = 32  # >= any VOS object count: the model holds at most 32 object queries (SPEC §5.2)
_PAD_IMAGE = 128  # the model pads images with grey (SPEC §2.1); a batch of clips of several sizes is padded alike


@dataclass(frozen=True)
class BatchPlan:
    """What all ranks' micro-batches of one iteration are made of."""

    dataset: str
    task: Task
    num_objects: int | None = None      # VOS: the chunk's object count (None for pseudo-videos: known after trimming)
    point_flags: tuple[bool, ...] = ()  # VOS: whether the i-th object counts towards the point objects

    def num_point_objects(self, num_objects: int) -> int:
        """How many of a VOS micro-batch's `num_objects` objects (its last ones) are given by their points."""
        return sum(self.point_flags[:num_objects])

    @property
    def sample_task(self) -> Task:
        """The task its clips are drawn for: PET (clips with points) when some object may be given by its point."""
        limit = MAX_POINT_FLAGS if self.num_objects is None else self.num_objects
        return Task.PET if self.task is Task.VOS and self.num_point_objects(limit) else self.task


class Schedule:
    """The plan of every iteration, a function of (seed, iteration // chunk) alone."""

    def __init__(self, sources: Mapping[str, ClipSource], weights: Sequence[float], *, chunk: int,
                 pet_likelihood: float, pretrain_task_weights: Mapping[Task, float] | None, seed: int):
        if chunk < 1:
            raise ValueError(f"training.sample_chunking_factor must be >= 1, got {chunk}")
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"training.dataset_weights must be >= 0 with a positive sum, got {list(weights)}")
        self.sources, self.names = sources, list(sources)
        self.probabilities = np.asarray(weights, np.float64) / total
        self.chunk, self.pet_likelihood, self.seed = chunk, pet_likelihood, seed
        self.pretrain_task_weights = pretrain_task_weights

    def plan(self, iteration: int, micro_step: int = 0) -> BatchPlan:
        rng = np.random.default_rng([self.seed, _PLAN_STREAM, iteration // self.chunk])
        name = self.names[int(rng.choice(len(self.names), p=self.probabilities))]
        source = self.sources[name]
        task = source.task
        if self.pretrain_task_weights is not None and source.pseudo_video:
            tasks = list(self.pretrain_task_weights)
            weights = np.asarray([self.pretrain_task_weights[t] for t in tasks], np.float64)
            task = tasks[int(rng.choice(len(tasks), p=weights / weights.sum()))]
        if task is not Task.VOS:
            return BatchPlan(name, task)
        # pseudo-videos take every object of their reference frame (the micro-batch is trimmed to its smallest count)
        num_objects = None if source.pseudo_video else int(rng.choice(source.object_counts()))
        # per micro-step, as the original draws them per forward call; the same on every rank
        points = np.random.default_rng([self.seed, _POINT_STREAM, iteration, micro_step])
        return BatchPlan(name, task, num_objects, draw_point_flags(points, self.pet_likelihood))


def draw_point_flags(rng: np.random.Generator, pet_likelihood: float) -> tuple[bool, ...]:
    """`BatchPlan.point_flags`: each object of a VOS batch is given by its point with `pet_likelihood`."""
    return tuple(bool(f) for f in rng.random(MAX_POINT_FLAGS) < pet_likelihood)


@dataclass(frozen=True)
class SampleKey:
    """One clip of one micro-batch: the DataLoader's index, from which a worker makes the clip."""

    plan: BatchPlan
    iteration: int
    micro_step: int
    index: int


class _Clips(Dataset):
    """Map-style dataset over SampleKeys: the clip of a key is drawn from the key's own generator."""

    def __init__(self, sources: Mapping[str, ClipSource], rank: int, seed: int):
        self.sources, self.rank, self.seed = sources, rank, seed

    def __getitem__(self, key: SampleKey) -> tuple[BatchPlan, ClipSample]:
        """The key's plan (which the collate function needs) and its clip."""
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, key.iteration, key.micro_step, self.rank, key.index])
        return key.plan, self.sources[key.plan.dataset].sample(rng, key.plan.sample_task, key.plan.num_objects)


def _pad(sample: ClipSample, height: int, width: int) -> ClipSample:
    """The sample padded right and bottom to (height, width): images grey, masks empty, padding ignored; PET points
    renormalised to the padded size."""
    h, w = sample.images.shape[2:]
    if (h, w) == (height, width):
        return sample
    pad = (0, width - w, 0, height - h)

    def grow(x: torch.Tensor | None, value: float) -> torch.Tensor | None:
        return None if x is None else torch.nn.functional.pad(x, pad, value=value)

    points = None if sample.points is None else sample.points * torch.tensor([h / height, w / width])
    return ClipSample(sample.dataset, sample.task, grow(sample.images, _PAD_IMAGE), grow(sample.masks, False),
                      sample.classes, grow(sample.semantic, 0), grow(sample.ignore, True), points, sample.meta)


def collate_padded(samples: Sequence[ClipSample], plan: BatchPlan | None = None) -> TrainingBatch:
    """`collate` after padding the clips to the largest height and width among them; VOS/PET clips of pseudo-videos
    (whose object counts differ) keep the first objects of each, as many as the clip with the fewest has. With a VOS
    `plan`, its point flags say how many of the last objects are given by their points."""
    num_point_objects = None
    if samples[0].task.guided_by_objects:
        fewest = min(s.num_objects for s in samples)
        samples = [trim_objects(s, fewest) for s in samples]
        if plan is not None and plan.task is Task.VOS:
            num_point_objects = plan.num_point_objects(fewest)
    height = max(s.images.shape[2] for s in samples)
    width = max(s.images.shape[3] for s in samples)
    return collate([_pad(s, height, width) for s in samples], num_point_objects=num_point_objects)


def _collate_planned(items: Sequence[tuple[BatchPlan, ClipSample]]) -> TrainingBatch:
    return collate_padded([sample for _, sample in items], items[0][0])


def _init_worker(_: int) -> None:
    # one OpenCV and torch thread per worker: N workers on N cores, not N x N threads
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class _Keys:
    """The batch sampler: one list of SampleKeys per micro-batch, in training order."""

    def __init__(self, loader: TrainLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for iteration, micro_step in self.loader.steps():
            plan = self.loader.schedule.plan(iteration, micro_step)
            yield [SampleKey(plan, iteration, micro_step, i) for i in range(self.loader.micro_batch_size)]

    def __len__(self) -> int:
        return len(self.loader)


class TrainLoader:
    """Iterable of (iteration, micro_step, TrainingBatch) for one rank, from `start_iteration` to `num_iterations`."""

    def __init__(self, sources: Mapping[str, ClipSource], schedule: Schedule, *, rank: int, micro_batch_size: int,
                 accumulation_steps: int, start_iteration: int, num_iterations: int, seed: int, num_workers: int):
        self.sources, self.schedule = sources, schedule
        self.rank, self.micro_batch_size, self.accumulation_steps = rank, micro_batch_size, accumulation_steps
        self.start_iteration, self.num_iterations = start_iteration, num_iterations
        self.seed, self.num_workers = seed, num_workers
        self.skipped_samples = 0
        self.skipped_by_dataset: dict[str, int] = {}

    def steps(self) -> Iterator[tuple[int, int]]:
        for iteration in range(self.start_iteration, self.num_iterations):
            for micro_step in range(self.accumulation_steps):
                yield iteration, micro_step

    def __len__(self) -> int:
        return max(0, self.num_iterations - self.start_iteration) * self.accumulation_steps

    def __iter__(self) -> Iterator[tuple[int, int, TrainingBatch]]:
        workers = self.num_workers > 0
        # Workers start from a fresh interpreter ("forkserver"): a worker forked from a process whose OpenCV or
        # OpenMP thread pools have run can deadlock in its first call into them (seen: cv2.setNumThreads).
        loader = DataLoader(_Clips(self.sources, self.rank, self.seed), batch_sampler=_Keys(self),
                            num_workers=self.num_workers, collate_fn=_collate_planned,
                            worker_init_fn=_init_worker if workers else None,
                            multiprocessing_context="forkserver" if workers else None)
        for (iteration, micro_step), batch in zip(self.steps(), loader):
            retries = sum(int(meta.get("retries", 0)) for meta in batch.meta)
            if retries:
                self.skipped_samples += retries
                self.skipped_by_dataset[batch.dataset] = self.skipped_by_dataset.get(batch.dataset, 0) + retries
            yield iteration, micro_step, batch

    def report(self) -> str:
        """One line on the unusable samples drawn again so far (for the end of training)."""
        if not self.skipped_samples:
            return "data: no unusable sample was drawn"
        per = ", ".join(f"{name} {count}" for name, count in sorted(self.skipped_by_dataset.items()))
        return f"data: {self.skipped_samples} unusable samples (no instance left after augmentation) drawn again: {per}"


def _pretrain_task_weights(cfg: Config) -> dict[Task, float] | None:
    if not cfg.training.pretraining:
        return None
    weights = cfg.training.pretrain_task_weights
    return {Task.VIS: weights.instance_seg, Task.VPS: weights.panoptic_seg, Task.VOS: weights.vos}


def build_train_loader(cfg: Config, *, rank: int, world_size: int, micro_batch_size: int, start_iteration: int = 0,
                       seed: int = 42, num_workers: int = 0) -> TrainLoader:
    """The loader of rank `rank` of `world_size`; reads every dataset of `training.dataset_list` first."""
    training = cfg.training
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of world_size {world_size} ranks")
    if micro_batch_size < 1 or training.batch_size % (world_size * micro_batch_size):
        raise ValueError(f"training.batch_size ({training.batch_size}) must be a multiple of world_size ({world_size}) "
                         f"x micro_batch_size ({micro_batch_size}) (--cfg.training.batch_size, --micro_batch_size, "
                         "the number of processes)")
    if not 0 <= start_iteration <= training.num_iterations:
        raise ValueError(f"start_iteration {start_iteration} is outside 0..training.num_iterations "
                         f"({training.num_iterations})")
    sources = {name: build_source(name, cfg) for name in training.dataset_list}
    schedule = Schedule(sources, training.dataset_weights, chunk=training.sample_chunking_factor,
                        pet_likelihood=training.point_vos_task_sample_likelihood,
                        pretrain_task_weights=_pretrain_task_weights(cfg), seed=seed)
    return TrainLoader(sources, schedule, rank=rank, micro_batch_size=micro_batch_size,
                       accumulation_steps=training.batch_size // (world_size * micro_batch_size),
                       start_iteration=start_iteration, num_iterations=training.num_iterations, seed=seed,
                       num_workers=num_workers)
