"""Map a function over independent work items (sequences, videos), in a process pool when that pays."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Estimated serial work, in seconds, below which the items run in this process. A pool costs its start-up
# (with fork, ~10-40 ms for two workers on a 2-core machine; with spawn or forkserver, the default on macOS,
# Windows and from Python 3.14 on Linux, every worker imports numpy and the evaluator again, ~0.3-0.5 s) and
# saves at most (1 - 1/workers) of the work, only while cores are idle: on a busy 2-core machine 30 DAVIS
# sequences took as long with two processes as with one.
MIN_POOL_SECONDS = 1.0


def parallel_map(fn: Callable[[Item], Result], items: Iterable[Item], workers: int, *,
                 seconds: Callable[[Item], float] | None = None) -> list[Result]:
    """[fn(item) for item in items], in order, spread over up to `workers` processes.

    `fn` must be a module-level function (it is pickled). `seconds(item)` estimates what fn(item) takes in
    this process (cheaply: from sizes, not by reading the data); when the estimates add up to less than
    MIN_POOL_SECONDS, or with one worker or one item, everything runs in this process, which keeps start-up
    and tracebacks short. Without `seconds` a pool starts whenever there are two workers and two items.
    """
    items = list(items)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(items) <= 1 or (seconds is not None and sum(map(seconds, items)) < MIN_POOL_SECONDS):
        return [fn(item) for item in items]
    # Imported here: ~20-60 ms of imports that a run in this process skips.
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def image_seconds(paths: Sequence[Path], seconds_per_pixel: float) -> float:
    """An estimate for work proportional to the pixels of the image files `paths` (all of one size): their
    number times the first one's pixels, read from its header, times the rate. 0 when that cannot be read
    (the work itself then names what is wrong)."""
    if not paths:
        return 0.0
    from PIL import Image  # the evaluators that read images have it imported already

    try:
        with Image.open(paths[0]) as image:
            width, height = image.size
    except OSError:  # missing, unreadable or not an image
        return 0.0
    return len(paths) * width * height * seconds_per_pixel
