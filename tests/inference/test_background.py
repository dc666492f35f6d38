"""Reading ahead and writing behind (background.py), alone and in the runner and the writers: order kept, queues
bounded, an error of either thread raised in the caller as it was raised, files of a failed write discarded, and
no thread left running after a run."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.inference import background
from tarvis_fast.inference.background import Prefetcher, consume_in_background
from tarvis_fast.inference.runner import ClipRunner, VosRequest
from tarvis_fast.inference.sequences import ObjectReference
from tarvis_fast.inference.video import (
    FrameResult,
    read_masks_json,
    video_output_files,
    write_video_outputs,
)

from .stubs import HEIGHT, WIDTH, StubTracker, make_video, square
from .test_runner import CLIPS_4_2


def own_threads() -> set[threading.Thread]:
    """Live threads but the main one and tqdm's progress monitor (which outlives bars by design)."""
    return {t for t in threading.enumerate() if t is not threading.main_thread() and type(t).__name__ != "TMonitor"}


@pytest.fixture(autouse=True)
def no_thread_left():
    before = own_threads()
    yield
    deadline = time.monotonic() + 5  # a thread that has put its last item may still be returning
    while own_threads() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert own_threads() - before == set()


class Source:
    """0, 1, 2, ...: counts what was read, fails at `fail_at` with `error`, records being closed."""

    def __init__(self, count: int, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.count, self.fail_at, self.error = count, fail_at, error
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise self.error
                self.read += 1
                yield i
        finally:
            self.closed = True


# ---------------------------------------------------------------------------------------------------- Prefetcher

def test_prefetcher_keeps_order_and_reads_at_most_depth_ahead():
    source = Source(50)
    got = []
    with Prefetcher(source, depth=3, name="test") as items:
        for item in items:
            time.sleep(0.001)
            # read: those taken, those queued (3), the one waiting to be queued and the one being produced
            assert source.read <= len(got) + 1 + 3 + 2
            got.append(item)
    assert got == list(range(50)) and source.closed


def test_prefetcher_raises_the_sources_error_where_it_happened():
    error = OSError("frame 3: cannot decode")
    got = []
    with pytest.raises(OSError, match="frame 3: cannot decode") as raised:
        for item in Prefetcher(Source(10, fail_at=3, error=error), depth=8, name="test"):
            got.append(item)  # noqa: PERF402 - the items before the error
    assert raised.value is error and got == [0, 1, 2]


def test_prefetcher_closed_early_stops_and_closes_its_source():
    source = Source(1000)
    items = Prefetcher(source, depth=2, name="test")
    assert next(items) == 0
    items.close()
    assert source.closed and source.read < 10
    assert list(items) == []


# ---------------------------------------------------------------------------------------------------- consumer

def test_consumer_gets_every_item_in_order_and_returns_its_result():
    result, busy = consume_in_background(Source(200), lambda items: list(items), depth=4, name="test")
    assert result == list(range(200)) and busy >= 0


def write_numbers(path: Path, fail_at: int | None = None):
    """A consumer writing its items to `path` atomically, failing with OSError at item `fail_at`."""
    def consume(items: Iterator[int]) -> int:
        with atomic_open(path, "w") as handle:
            for item in items:
                if item == fail_at:
                    raise OSError(f"{path}: no space left on device")
                handle.write(f"{item}\n")
        return item

    return consume


def test_consumer_error_is_raised_in_the_caller_and_stops_the_items(tmp_path):
    source = Source(1000)
    with pytest.raises(OSError, match="no space left on device"):
        consume_in_background(source, write_numbers(tmp_path / "out.txt", fail_at=5), depth=2, name="test")
    assert source.closed and source.read < 20
    assert list(tmp_path.iterdir()) == []  # the half-written file was discarded


@pytest.mark.parametrize("error", [ValueError("frame 7: bad"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_callers_error_discards_what_the_consumer_was_writing(tmp_path, error):
    with pytest.raises(type(error)) as raised:
        consume_in_background(Source(20, fail_at=7, error=error), write_numbers(tmp_path / "out.txt"), depth=2,
                              name="test")
    assert raised.value is error
    assert list(tmp_path.iterdir()) == []


def test_a_consumer_that_stops_early_is_an_error():
    with pytest.raises(RuntimeError, match="returned before the end of its items"):
        consume_in_background(Source(100), lambda items: next(items), depth=1, name="test")


def test_a_stuck_thread_is_left_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(background, "JOIN_TIMEOUT_S", 0.05)
    release = threading.Event()

    def stuck() -> Iterator[int]:
        yield 0
        release.wait()
        yield 1

    items = Prefetcher(stuck(), depth=1, name="stuck source")
    assert next(items) == 0
    items.close()  # returns although the thread is still in the source
    assert "'stuck source' did not stop" in caplog.text
    release.set()


# ---------------------------------------------------------------------------------------------------- in a run

def test_runner_raises_a_frame_sources_error_as_raised():
    frames = make_video({40: [(2, 2)] * 8})

    def failing() -> Iterator[np.ndarray]:
        yield from frames[:5]
        raise OSError("clip.mp4: frame 5: corrupt data")

    runner = ClipRunner(StubTracker(), device="cpu")
    request = VosRequest([ObjectReference(1, 0, square((2, 2)), None)], True)
    results = runner.run(failing(), len(frames), (HEIGHT, WIDTH), request, CLIPS_4_2)
    with pytest.raises(OSError, match="clip.mp4: frame 5: corrupt data"):
        list(results)
    assert [f.frame_index for f in runner.run(iter(frames), len(frames), (HEIGHT, WIDTH), request, CLIPS_4_2)] == \
        list(range(8))


def frame_results(count: int, bad_at: int | None = None) -> Iterator[tuple[int, FrameResult]]:
    """VPS-like results of 8x8 frames; the one at `bad_at` has a class the RGB PNG encoding cannot hold."""
    for index in range(count):
        semantic = np.full((8, 8), 300 if index == bad_at else 1, np.int32)
        masks = np.zeros((1, 8, 8), bool)
        masks[0, 2:5, 2:5] = True
        yield index, FrameResult(index, [1], masks, [0], ["car"], [None], semantic=semantic,
                                 image=np.full((8, 8, 3), 10 * index, np.uint8))


def write(output: Path, results) -> float:
    return write_video_outputs(output, results, None, 5.0, source="test", task="vps", vocabulary="kitti_step",
                               class_names=["road", "car"])


def test_video_outputs_are_written_in_order(tmp_path):
    assert write(tmp_path, frame_results(20)) >= 0
    _, frames = read_masks_json(tmp_path / "masks.json")
    assert [index for index, _, _ in frames] == list(range(20))
    assert [name for _, name, _ in frames] == [f"{i:05d}" for i in range(20)]
    assert len(list((tmp_path / "masks").glob("*.png"))) == 20


def test_a_failed_video_write_raises_and_leaves_no_half_written_file(tmp_path):
    with pytest.raises(ValueError, match="classes above 255"):
        write(tmp_path, frame_results(20, bad_at=6))
    left = [p.relative_to(tmp_path).as_posix() for p in video_output_files(tmp_path)]
    # the mask PNGs of the frames before the failure are whole; masks.json and the overlay are not there at all
    assert left == [f"masks/{i:05d}.png" for i in range(6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


def test_a_failing_model_discards_the_video_outputs(tmp_path):
    def results() -> Iterator[tuple[int, FrameResult]]:
        yield from frame_results(3)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        write(tmp_path, results())
    assert not (tmp_path / "masks.json").exists() and not (tmp_path / "overlay.mp4").exists()
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in video_output_files(tmp_path))
