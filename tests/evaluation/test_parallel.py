"""parallel_map: the same results in order, in this process for small work, in a pool for large work; image_seconds."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.evaluation import parallel
from tarvis_fast.evaluation.parallel import image_seconds, parallel_map


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@pytest.fixture(autouse=True)
def pool_from_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_POOL_SECONDS", 1.0)  # conftest.py sets 0 for the other tests


def test_small_work_runs_in_this_process():  # 4 x 0.2 s < 1 s
    results = parallel_map(square_and_pid, range(4), 2, seconds=lambda item: 0.2)
    assert [r for r, _ in results] == [0, 1, 4, 9]
    assert {pid for _, pid in results} == {os.getpid()}


def test_large_work_runs_in_a_pool():  # 4 x 0.25 s = 1 s
    results = parallel_map(square_and_pid, range(4), 2, seconds=lambda item: 0.25)
    assert [r for r, _ in results] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize("workers, items", [(1, range(4)), (2, [3])])
def test_one_worker_or_one_item_runs_in_this_process(workers, items):
    assert {pid for _, pid in parallel_map(square_and_pid, items, workers)} == {os.getpid()}


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        parallel_map(square_and_pid, [1], 0)


def test_image_seconds_from_the_first_header(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((6, 10), np.uint8)).save(tmp_path / name)
    assert image_seconds([tmp_path / "a.png", tmp_path / "b.png"], 0.5) == 2 * 60 * 0.5
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for unreadable in ([], [tmp_path / "missing.png"], [tmp_path / "broken.png"]):
        assert image_seconds(unreadable, 0.5) == 0.0
