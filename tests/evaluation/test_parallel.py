"""parallel_map: the same results in order, in this process for small work, in a pool for large work."""
from __future__ import annotations

import os

import pytest

from tarvis_fast.evaluation import parallel
from tarvis_fast.evaluation.parallel import parallel_map


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_small_work_runs_in_this_process():
    results = parallel_map(square_and_pid, range(4), 2, seconds=lambda item: parallel.MIN_POOL_SECONDS / 10)
    assert [r for r, _ in results] == [0, 1, 4, 9]
    assert {pid for _, pid in results} == {os.getpid()}


def test_large_work_runs_in_a_pool():
    results = parallel_map(square_and_pid, range(4), 2, seconds=lambda item: parallel.MIN_POOL_SECONDS)
    assert [r for r, _ in results] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize("workers, items", [(1, range(4)), (2, [3])])
def test_one_worker_or_one_item_runs_in_this_process(workers, items):
    assert {pid for _, pid in parallel_map(square_and_pid, items, workers)} == {os.getpid()}


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        parallel_map(square_and_pid, [1], 0)
