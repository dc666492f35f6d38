"""Command line for the built-in metrics.

    python -m tarvis_fast.evaluation {ytvis,ovis,davis,kitti_step,cityscapes_vps,vipseg,burst} --pred P --gt G [--json OUT]

--pred is what infer.py wrote for the benchmark; --gt the benchmark's ground truth in its own layout (EVAL.md).
Prints every statistic under the name the official tool prints, on the official tool's scale.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from tarvis_fast.cli_errors import (
    UsageError,
    add_debug_flag,
    check_output_file,
    run_cli,
)
from tarvis_fast.formats.atomic import atomic_open

# benchmark -> (module under tarvis_fast.evaluation, function(pred: Path, gt: Path, *, workers: int) -> dict)
EVALUATORS: dict[str, tuple[str, str]] = {
    "ytvis": ("ytvis", "evaluate_ytvis"),
    "ovis": ("ytvis", "evaluate_ovis"),
    "davis": ("davis", "evaluate_davis"),
    "kitti_step": ("stq", "evaluate_kitti_step"),
    "cityscapes_vps": ("vpq", "evaluate_cityscapes_vps"),
    "vipseg": ("vpq", "evaluate_vipseg"),
    "burst": ("hota", "evaluate_burst"),
}


def evaluate(benchmark: str, pred: Path, gt: Path, *, workers: int | None = None) -> dict:
    """Run one benchmark's metric; the dict is JSON-serialisable."""
    if benchmark not in EVALUATORS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(EVALUATORS)}")
    module, function = EVALUATORS[benchmark]
    fn = getattr(importlib.import_module(f"tarvis_fast.evaluation.{module}"), function)
    return fn(Path(pred), Path(gt), workers=workers or min(8, os.cpu_count() or 1))


def _print_stats(stats: dict, indent: str = "") -> None:
    for key, value in stats.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_stats(value, indent + "  ")
        elif isinstance(value, float):
            print(f"{indent}{key:<24} {value:.6f}")
        elif not isinstance(value, list):
            print(f"{indent}{key:<24} {value}")


def main(argv: list[str] | None = None) -> int:
    """The command line; bad inputs end in one line `error: <path or flag>: <what is wrong>` and exit code 2."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tarvis_fast.evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(EVALUATORS))
    parser.add_argument("--pred", type=Path, required=True, help="predictions as written by infer.py")
    parser.add_argument("--gt", type=Path, required=True, help="ground truth in the benchmark's own layout")
    parser.add_argument("--json", type=Path, help="write all statistics here (JSON)")
    parser.add_argument("--workers", type=int, default=None,
                        help="at most this many processes for per-sequence work (default: the CPUs, at most 8); "
                             "inputs of less than about a second of work run in one process")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    for flag, path in (("--pred", args.pred), ("--gt", args.gt)):
        if not path.exists():
            raise UsageError(f"{flag} {path}", "does not exist")
    if args.json is not None:  # checked now, not after minutes of scoring
        check_output_file("--json", args.json)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}", "must be at least 1")
    stats = evaluate(args.benchmark, args.pred, args.gt, workers=args.workers)
    _print_stats(stats)
    if args.json:
        with atomic_open(args.json, "w") as handle:
            json.dump(stats, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
