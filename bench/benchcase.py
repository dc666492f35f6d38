"""`BenchCase`, what every `bench/cases_*.py` module yields and `gpu_report.py` times: in its own module so
that the cases and the report both import it and neither imports the other."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchCase:
    """One implementation at one shape.

    setup() allocates the inputs and returns the function to time (it runs the forward, or the forward
    and backward, of `impl`); min_bytes is the traffic an ideal implementation cannot avoid (inputs read
    once, outputs written once), used for the achieved bandwidth. A setup() that raises (e.g. an optional
    library missing, out of memory) gives a row that says why instead of a time. setup() may write
    facts about the row into `notes` (e.g. how long a compiling first call took); the report prints them.
    """

    group: str
    impl: str
    mode: str
    setup: Callable[[], Callable[[], object]]
    min_bytes: int
    notes: dict[str, str] = field(default_factory=dict, compare=False)
