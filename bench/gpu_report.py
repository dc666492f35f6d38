"""GPU report: our kernels against the PyTorch path, its torch.compile'd form and library baselines.

    python bench/gpu_report.py [--only msda masked_attention window_attention] [--out bench/results/NAME.md]

Each row is one implementation of one op at one shape and mode (forward, or forward+backward): median
time over repeated runs (CUDA events), the speed-up against the group's reference implementation (the
first row of the group, the PyTorch path), peak memory above what the inputs hold, and achieved bandwidth
(the bytes an ideal implementation must move, over the time) as a fraction of the device's measured
device-to-device copy bandwidth. All rows come from one process, side by side.

Shapes and implementations live in the `bench/cases_*.py` modules, one per op; each exposes
`cases(device) -> Iterable[BenchCase]` (`bench/benchcase.py`). This script imports them by name from its own
directory, which Python puts first on sys.path when it runs a script.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from benchcase import BenchCase

CASE_MODULES = {
    "msda": "cases_msda",
    "masked_attention": "cases_masked_attention",
    "window_attention": "cases_window_attention",
    "model": "cases_model",
    "losses": "cases_losses",
}


@dataclass
class Row:
    case: BenchCase
    ms: float | None
    peak_mib: float | None
    note: str = ""


def time_cuda(fn: Callable[[], object], warmup: int = 5, reps: int = 20) -> float:
    """Median milliseconds of fn() over reps runs, after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth_gbs(device: torch.device, mib: int = 1024) -> float:
    """Measured device-to-device copy bandwidth in GB/s (read + write counted)."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src), warmup=3, reps=10)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def run_case(case: BenchCase, device: torch.device) -> Row:
    torch.cuda.empty_cache()
    try:
        fn = case.setup()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        ms = time_cuda(fn)
        return Row(case, ms, peak, note="; ".join(f"{k}: {v}" for k, v in case.notes.items()))
    except Exception as exc:  # report and go on: one failing baseline must not hide the others
        return Row(case, None, None, note=f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}")
    finally:
        torch.cuda.empty_cache()


def format_table(rows: list[Row], copy_gbs: float) -> str:
    lines = [
        "| op / shape | mode | impl | ms | speed-up vs ref | peak MiB | GB/s | % of copy BW | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    ref_ms: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row.case.group, row.case.mode)
        if row.ms is not None:
            ref_ms.setdefault(key, row.ms)
        if row.ms is None:
            lines.append(f"| {row.case.group} | {row.case.mode} | {row.case.impl} | – | – | – | – | – | {row.note} |")
            continue
        gbs = row.case.min_bytes / (row.ms * 1e-3) / 1e9
        speedup = ref_ms[key] / row.ms
        lines.append(
            f"| {row.case.group} | {row.case.mode} | {row.case.impl} | {row.ms:.3f} | {speedup:.2f}x | "
            f"{row.peak_mib:.1f} | {gbs:.0f} | {100 * gbs / copy_gbs:.0f}% | {row.note} |"
        )
    return "\n".join(lines)


def environment_header(device: torch.device, copy_gbs: float) -> str:
    import triton

    props = torch.cuda.get_device_properties(device)
    return (
        f"# tarvis-fast GPU report\n\n"
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- device: {props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})\n"
        f"- torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}\n"
        f"- measured copy bandwidth: {copy_gbs:.0f} GB/s (device-to-device, read + write)\n"
        f"- speed-up is against the first row of each group (the PyTorch path); memory is the peak above the inputs\n"
    )


def collect(only: Iterable[str], device: torch.device) -> list[BenchCase]:
    cases: list[BenchCase] = []
    for name in only:
        cases.extend(importlib.import_module(CASE_MODULES[name]).cases(device))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CASE_MODULES), default=list(CASE_MODULES))
    parser.add_argument("--out", type=Path, help="write the report (markdown) here as well")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_report.py needs a CUDA device; on CPU run `pytest bench/` instead", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    copy_gbs = copy_bandwidth_gbs(device)
    rows = [run_case(case, device) for case in collect(args.only, device)]
    report = environment_header(device, copy_gbs) + "\n" + format_table(rows, copy_gbs) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(report)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
