"""What inference runs on: a benchmark's sequences, each with its frames and (VOS/PET) its object references,
and the selection of the sequences one process runs (`--seq_names`, `--seq_split i/n`).

`inference.readers` makes these from a benchmark's files, `VideoPredictor` from a user's video; the runner and
the writers take them. `ObjectReference.point` is (y, x) in pixels as the file gives it; the runner maps it to the
network's normalised coordinates, `((y + 0.5) / H, (x + 0.5) / W)` as the original.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tarvis_fast.tasks import Task


class BenchmarkDataError(ValueError):
    """A benchmark input is malformed; the message names the file (and the entry) and the flag that replaces it."""


@dataclass(frozen=True)
class ObjectReference:
    """One VOS/PET object's first reference: a mask, a point, or both."""

    object_id: int                          # > 0: DAVIS palette id, BURST track id
    frame_index: int                        # index into SequenceInfo.frames
    mask: np.ndarray | None                 # (H, W) bool at the original resolution
    point: tuple[float, float] | None       # (y, x) in pixels at the original resolution

    def __post_init__(self) -> None:
        if self.object_id < 1 or self.frame_index < 0:
            raise ValueError(f"object ids are >= 1 and frame indices >= 0, got object {self.object_id} at frame "
                             f"{self.frame_index}")
        if self.mask is None and self.point is None:
            raise ValueError(f"object {self.object_id}: a reference needs a mask or a point")
        if self.mask is not None and (self.mask.ndim != 2 or self.mask.dtype != bool):
            raise ValueError(f"object {self.object_id}: mask must be an (H, W) bool array, got {self.mask.dtype} "
                             f"{self.mask.shape}")


@dataclass(frozen=True)
class SequenceInfo:
    """One video of a benchmark, as the runner needs it."""

    name: str                                   # unique within the benchmark; what --seq_names selects
    frames: list[Path]                          # the frames to run, in order
    frame_names: list[str]                      # output names without extension, one per frame
    height: int
    width: int
    references: Sequence[ObjectReference] = ()  # VOS/PET only; may be lazy (`LazyReferences`)
    meta: Mapping[str, Any] = field(default_factory=dict)  # writer-specific: video id, image ids, ...

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.frame_names) or not self.frames:
            raise ValueError(f"sequence {self.name}: {len(self.frames)} frames and {len(self.frame_names)} names; "
                             "a sequence needs at least one frame and one name per frame")


class LazyReferences(Sequence[ObjectReference]):
    """References whose masks are decoded on each iteration instead of held (BURST mask mode: a thousand
    videos' masks are never held at once). Iterate it once per sequence."""

    def __init__(self, count: int, load: Callable[[], list[ObjectReference]]):
        self._count, self._load = count, load

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[ObjectReference]:
        return iter(self._load())

    def __getitem__(self, index):  # type: ignore[override]
        return self._load()[index]

    def __repr__(self) -> str:
        return f"<{self._count} references, loaded on use>"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's sequences, as `readers.open_benchmark` found them.

    `layout` selects its writer (`writers.open_writer`), `metric` its scorer in `tarvis_fast.evaluation`,
    `thing_classes` (0-based) the VPS accumulator's things; `paths` are the resolved inputs and `ground_truth`
    what the metric takes as `--gt`, when given.
    """

    name: str                               # e.g. "DAVIS"; also its key in Config.datasets
    task: Task                              # BURST in point mode: Task.PET
    split: str
    layout: str
    metric: str
    thing_classes: tuple[int, ...]
    paths: Mapping[str, Path]
    ground_truth: Path | None
    _sequences: tuple[SequenceInfo, ...] = field(repr=False)

    def sequences(self) -> list[SequenceInfo]:
        return list(self._sequences)


def select_sequences(sequences: Sequence[SequenceInfo], names: Iterable[str] | None = None,
                     seq_split: str | None = None) -> list[SequenceInfo]:
    """`--seq_names` and `--seq_split i/n`: the named sequences (in benchmark order), then the i-th (1-based) of n
    contiguous shards of ceil(N / n) sequences each, as the original splits them."""
    selected = list(sequences)
    if names is not None:
        wanted = set(names)
        unknown = wanted - {s.name for s in selected}
        if unknown:
            raise ValueError(f"--seq_names: no such sequences: {', '.join(sorted(unknown)[:10])}")
        selected = [s for s in selected if s.name in wanted]
    if seq_split is not None:
        parts = str(seq_split).split("/")
        try:
            index, count = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            index = count = 0
        if len(parts) != 2 or not 1 <= index <= count:
            raise ValueError(f"--seq_split must be 'i/n' with 1 <= i <= n, got {seq_split!r}")
        size = math.ceil(len(selected) / count)
        selected = selected[size * (index - 1): size * index]
    return selected
