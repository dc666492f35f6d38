"""The evaluation tests call evaluators with workers=2 to check that a process pool gives the numbers of one
process. Their data is tiny, far below the work for which parallel_map starts a pool, so that threshold is 0
here (tests/evaluation/test_parallel.py sets its own)."""
from __future__ import annotations

import pytest

from tarvis_fast.evaluation import parallel


@pytest.fixture(autouse=True)
def pool_for_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_POOL_SECONDS", 0.0)
