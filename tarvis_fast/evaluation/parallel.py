"""Map a function over independent work items (sequences, videos) in a process pool."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(fn: Callable[[Item], Result], items: Iterable[Item], workers: int) -> list[Result]:
    """[fn(item) for item in items], in order, spread over `workers` processes.

    `fn` must be a module-level function (it is pickled). With one worker or one item everything
    runs in this process, which keeps tracebacks simple and avoids the pool's start-up cost.
    """
    items = list(items)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
