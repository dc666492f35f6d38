"""Whole-process time of our DAVIS-2017 J&F command line against the official toolkit's, side by side.

    python bench/davis_vs_official.py [--sequences 5 30] [--repeats 3] [--official-python PY] [--official-dir DIR]

The official toolkit (github davisvideochallenge/davis2017-evaluation) is the oracle; install it in a venv of
its own, outside this repository (numpy, scipy, scikit-image, opencv-python-headless, pandas, pillow, tqdm and
the toolkit), and point --official-python at that venv's python and --official-dir at the toolkit's checkout
(the folder holding evaluation_method.py). When its package does not import there, this script says so and
exits 0 without measuring.

Inputs: N copies of the real 50-frame DAVIS clip horsejump-high (854x480, 2 objects; ../shared/data or
$TARVIS_SHARED_DATA), with the OSVOS masks as ground truth and, as results, those masks moved by 1-9 pixels
right or down (a different move per copy), written once into a temporary folder. Each repeat runs both
commands on the same files, alternating which goes first, each as a fresh process:

    ours:      python -m tarvis_fast.evaluation davis --pred RESULTS --gt ROOT
    official:  python evaluation_method.py --task semi-supervised --results_path RESULTS --davis_path ROOT

(the official script caches its CSVs in the results folder; they are deleted before each of its runs). Its
global numbers, printed to 3 decimals in its CSV, must equal ours. Printed per set: the median wall and CPU
time (user + system of the process and its children) of each, their ratios, and the load average before
and after, as the machine may be shared: compare the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tarvis_fast.formats.davis import read_label_png, write_results

SEQUENCE = "horsejump-high"
SHARED_DATA = Path(os.environ.get("TARVIS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GLOBAL_CSV = "global_results-val.csv"  # what evaluation_method.py writes (and reuses) for --set val


def build_set(base: Path, n_sequences: int) -> tuple[Path, Path]:
    """(results folder, DAVIS root) with n copies of the real clip under `base`."""
    clip = SHARED_DATA / "davis"
    masks = clip / "osvos" / SEQUENCE
    names = sorted(p.stem for p in masks.glob("*.png"))
    truth = np.stack([read_label_png(masks / f"{name}.png") for name in names])
    root, results = base / "root", base / "results"
    sequences = [f"{SEQUENCE}-{i:03d}" for i in range(n_sequences)]
    for i, sequence in enumerate(sequences):
        for folder, source in (("JPEGImages", clip / "JPEGImages" / SEQUENCE), ("Annotations", masks)):
            (root / folder / "480p").mkdir(parents=True, exist_ok=True)
            (root / folder / "480p" / sequence).symlink_to(source)
        write_results(results, sequence, names, np.roll(truth, 1 + i % 9, axis=1 + i % 2))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{s}\n" for s in sequences))
    return results, root


def timed(command: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its children, stdout) of one run; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def official_toolkit_runs(python: str, toolkit_dir: Path) -> bool:
    """Whether `python` imports the toolkit's package in `toolkit_dir`, which holds its evaluation_method.py."""
    if not (toolkit_dir / "evaluation_method.py").is_file():
        return False
    try:
        probe = subprocess.run([python, "-c", "import davis2017.evaluation"], cwd=toolkit_dir, capture_output=True,
                               check=False)
    except OSError:  # no such interpreter
        return False
    return probe.returncode == 0


def official_numbers(results: Path) -> dict[str, float]:
    with open(results / GLOBAL_CSV) as handle:
        return {name: float(value) for name, value in next(csv.DictReader(handle)).items()}


def compare(n_sequences: int, repeats: int, official_python: str, official_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="davis_vs_official_") as tmp:
        results, root = build_set(Path(tmp), n_sequences)
        ours_json = Path(tmp) / "ours.json"
        ours = [sys.executable, "-m", "tarvis_fast.evaluation", "davis", "--pred", str(results), "--gt", str(root),
                "--json", str(ours_json)]
        official = [official_python, "evaluation_method.py", "--task", "semi-supervised",
                    "--results_path", str(results), "--davis_path", str(root)]
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "official": []}
        load_before = os.getloadavg()
        for repeat in range(repeats):
            order = ("ours", "official") if repeat % 2 == 0 else ("official", "ours")
            for who in order:
                if who == "official":
                    for cached in results.glob("*.csv"):
                        cached.unlink()
                    wall, cpu, _ = timed(official, cwd=official_dir)
                else:
                    wall, cpu, _ = timed(ours)
                times[who].append((wall, cpu))
        load_after = os.getloadavg()
        ours_stats = json.loads(ours_json.read_text())
        for name, value in official_numbers(results).items():
            if abs(round(ours_stats[name], 3) - value) > 1e-9:
                raise AssertionError(f"{name}: ours {ours_stats[name]:.6f}, official {value:.3f}")
    median = {who: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
              for who, runs in times.items()}
    return {"sequences": n_sequences, "frames": 50 * n_sequences, "repeats": repeats,
            "ours_wall_s": median["ours"][0], "official_wall_s": median["official"][0],
            "ours_cpu_s": median["ours"][1], "official_cpu_s": median["official"][1],
            "wall_ratio": median["official"][0] / median["ours"][0],
            "cpu_ratio": median["official"][1] / median["ours"][1],
            "load_before": load_before, "load_after": load_after, "J&F-Mean": ours_stats["J&F-Mean"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, nargs="+", default=[5, 30], help="set sizes (copies of the clip)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command per set")
    parser.add_argument("--official-python", default=os.environ.get("DAVIS_OFFICIAL_PYTHON",
                                                                    "/tmp/davis_oracle/venv/bin/python"))
    parser.add_argument("--official-dir", type=Path, default=Path(os.environ.get("DAVIS_OFFICIAL_DIR",
                                                                                 "/tmp/davis_oracle/src")))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if not (SHARED_DATA / "davis" / "osvos" / SEQUENCE).is_dir():
        print(f"skipped: the real DAVIS clip is not under {SHARED_DATA / 'davis'} (set TARVIS_SHARED_DATA)")
        return 0
    if not official_toolkit_runs(args.official_python, args.official_dir):
        print(f"skipped: the official DAVIS toolkit does not import with {args.official_python} in "
              f"{args.official_dir} (see this script's docstring to install it)")
        return 0
    rows = []
    print(f"{'sequences':>9} {'ours wall':>9} {'official':>9} {'ratio':>6} {'ours CPU':>9} {'official':>9} "
          f"{'ratio':>6}  load before -> after")
    for n in args.sequences:
        row = compare(n, args.repeats, args.official_python, args.official_dir)
        rows.append(row)
        print(f"{n:>9} {row['ours_wall_s']:>8.2f}s {row['official_wall_s']:>8.2f}s {row['wall_ratio']:>5.1f}x "
              f"{row['ours_cpu_s']:>8.2f}s {row['official_cpu_s']:>8.2f}s {row['cpu_ratio']:>5.1f}x  "
              f"{row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
