"""Reading ahead and writing behind: the I/O of a run in background threads, so that the model does not wait
for frames to be decoded and the writer does not wait for the model.

    with Prefetcher(decode_and_resize(paths), depth=8, name="frames") as frames:
        for frame in frames:            # produced by a thread up to 8 ahead; its error is raised here, in order
            ...
    written, busy = consume_in_background(results, write_all, depth=16, name="writer")
        # iterates `results` here (the model runs in the calling thread) while `write_all(items)` runs in a thread

Both keep the order of the items, bound their queues (memory stays flat however long the video) and raise an
error of the other thread in the caller as it was raised (the same exception: type and message), once, where the
items have got to. Their threads are daemons, stopped and joined when the iteration ends, fails or is interrupted
(Ctrl-C is raised in the main thread, which then stops them), so no thread outlives a run. A thread stuck in
someone else's code (a frame source that never returns) is left to die with the process after `JOIN_TIMEOUT_S`,
with a warning, rather than hanging the caller.

Each records how long its thread was busy (`busy_seconds`): what the stage would have cost the calling thread.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)

# Results queued for a writer thread: enough to ride out a slow frame (a PNG of many objects) without holding
# more than a clip's worth of full-size frames and masks.
WRITE_AHEAD = 8
JOIN_TIMEOUT_S = 10.0   # how long stopping waits for a thread (it finishes the item at hand first)
_POLL_S = 0.1           # how often a thread blocked on a full queue looks whether it should stop


class _End:
    """Marks the end of the items in a queue."""


class _Failed:
    """Carries an exception from one thread to the other, in order with the items."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class StoppedError(Exception):
    """Raised inside a background consumer when the caller stopped on an error of its own, so that the consumer's
    `with atomic_open(...)` blocks see an exception and discard their files."""


def _put(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            pass
    return False


def _join(thread: threading.Thread) -> None:
    thread.join(JOIN_TIMEOUT_S)
    if thread.is_alive():
        logger.warning("background thread %r did not stop within %.0f s; it is left to end with the process",
                       thread.name, JOIN_TIMEOUT_S)


def _close(iterator: Iterator) -> None:
    """Close a generator (its `finally` runs); other iterators have nothing to close."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class Prefetcher(Generic[T]):
    """Iterates `source` in a daemon thread, at most `depth` items ahead of the caller (see the module docstring).

    The source is iterated, and closed, in the thread only. `close()` (also on leaving a `with` block) stops the
    thread early; the end of the items or an error closes it too.
    """

    def __init__(self, source: Iterable[T], depth: int, name: str) -> None:
        if depth < 1:
            raise ValueError(f"Prefetcher: depth must be >= 1, got {depth}")
        self.busy_seconds = 0.0
        self._items: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), name=name, daemon=True)
        self._thread.start()

    def _produce(self, source: Iterator[T]) -> None:
        last: _End | _Failed = _End()
        try:
            while True:
                started = time.perf_counter()
                try:
                    item = next(source)
                except StopIteration:
                    break
                finally:
                    self.busy_seconds += time.perf_counter() - started
                if not _put(self._items, item, self._stop):
                    return  # closed early: nobody reads the end
        except BaseException as error:  # noqa: BLE001 - handed to the caller, which raises it
            last = _Failed(error)
        finally:
            _close(source)
        _put(self._items, last, self._stop)

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item = self._items.get()
        if isinstance(item, (_End, _Failed)):
            self.close()
            if isinstance(item, _Failed):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread and wait for it (it finishes the item it is producing); later `next` calls end."""
        self._stop.set()
        _join(self._thread)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Consumer(Generic[T, R]):
    """The thread of `consume_in_background`: runs `consume` on the items put into its queue."""

    def __init__(self, consume: Callable[[Iterator[T]], R], depth: int, name: str) -> None:
        self.busy_seconds = 0.0
        self._result: R | None = None
        self._error: BaseException | None = None
        self._items: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()  # set when the thread has ended: puts stop waiting
        self._consume = consume
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _queued(self) -> Iterator[T]:
        """The items as `consume` iterates them; time spent waiting for the caller is not busy time."""
        while True:
            waiting = time.perf_counter()
            item = self._items.get()
            self.busy_seconds -= time.perf_counter() - waiting
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise StoppedError("the items stopped on an error") from item.error
            yield item

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self._result = self._consume(self._queued())
        except StoppedError:
            pass  # the caller raises its own error
        except BaseException as error:  # noqa: BLE001 - raised in the caller by `put` or `finish`
            self._error = error
        finally:
            self.busy_seconds += time.perf_counter() - started
            self._stop.set()

    def put(self, item: T) -> None:
        """Queue an item; raises the thread's error if it has failed."""
        if not _put(self._items, item, self._stop):
            self.finish()  # raises its error
            raise RuntimeError(f"{self._thread.name}: the consumer returned before the end of its items")

    def finish(self) -> R:
        """Mark the end of the items, wait for the thread, and return `consume`'s result or raise its error."""
        _put(self._items, _End(), self._stop)
        _join(self._thread)
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    @property
    def failed(self) -> bool:
        return self._error is not None

    def abort(self, error: BaseException) -> None:
        """Stop the thread on the caller's `error` (its iterator raises `StoppedError`) and wait for it."""
        _put(self._items, _Failed(error), self._stop)
        _join(self._thread)


def consume_in_background(items: Iterable[T], consume: Callable[[Iterator[T]], R], *, depth: int,
                          name: str) -> tuple[R, float]:
    """`consume(iterator of items)` run in a daemon thread while `items` is iterated in the calling thread, at most
    `depth` items ahead of the consumer. Returns what `consume` returns and the seconds its thread was busy.

    An error of `consume` is raised here, and `items` is closed (a generator stops where it is); an error of
    `items` (or Ctrl-C) makes the consumer's iterator raise `StoppedError`, so that what it was writing is
    discarded, and is raised here once the consumer has stopped. `consume` must iterate to the end of its items.
    """
    consumer = _Consumer(consume, depth, name)
    source = iter(items)
    try:
        for item in source:
            consumer.put(item)
    except BaseException as error:
        if not consumer.failed:  # the caller's own error (or Ctrl-C): stop the consumer first
            consumer.abort(error)
        _close(source)
        raise
    return consumer.finish(), consumer.busy_seconds
