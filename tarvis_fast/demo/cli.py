"""`python -m tarvis_fast.demo [--out DIR] [--quick] [--seed S]`: the whole job on bundled data, offline.

1. generate procedural train and val videos for the four demo benchmarks (`demo.data`, seeded);
2. save the model's initial weights (the "untrained" model), then train it with `train.py` on the config
   `configs/demo.yaml` (written into the output folder with its data paths made absolute);
3. run `infer.py --dataset DEMO_* --eval` for each task with both models, on the val sets through the path flags;
4. print one table of the built-in metrics, trained beside untrained, and write `report/index.html` (the table,
   the loss curves, an overlay video per task made with `infer.py --video`).

Re-running with the same folder reuses the generated data and the untrained weights, continues an interrupted
training from its newest checkpoint (`train.py --restore_session`), skips training when the final checkpoint
exists, and runs inference again. The output folder must be new, empty or a demo's own (it holds a `.tarvis_demo`
marker): the demo never writes into a folder holding other files. Bad flags end in one `error:` line, exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tarvis_fast.cli_errors import UsageError, add_debug_flag, check_output_dir, run_cli
from tarvis_fast.config import Config, load_config, save_config
from tarvis_fast.datasets import DATASETS
from tarvis_fast.demo.data import DataSizes, set_folder, write_demo_data
from tarvis_fast.formats.atomic import atomic_open

PROG = "python -m tarvis_fast.demo"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
MARKER = ".tarvis_demo"
CONFIG_NAME, UNTRAINED, RUN, RESULTS, REPORT = "demo.yaml", "untrained", "run", "results", "report"
TASK_DATASETS = {"vis": "DEMO_VIS", "vps": "DEMO_VPS", "vos": "DEMO_VOS", "pet": "DEMO_PET"}
# The benchmarks' ground truth for --eval, in each metric's own layout, relative to a val set's folder.
GROUND_TRUTH = {"vis": "val.json", "vps": ".", "vos": ".", "pet": "."}
VIDEO_FLAGS = ("--disable_resize", "--clip_length", "6", "--frame_overlap", "2")  # the overlays: the demo's settings
DEFAULT_MAX_THREADS = 2


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS reports it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Profile:
    """How big a demo run is: its data, and what it changes in configs/demo.yaml (None: the file's value)."""

    name: str
    data: DataSizes
    iterations: int | None


PROFILES = {
    # 64x64 frames fill the model's 64-pixel padding grid exactly (64x96 ones were padded to 64x128 at the cost of
    # 64x128); 32 val videos per task: a VOS object's J ranges from 0 to 0.85, so the mean over 8 videos (~16
    # objects) moved by +-6 points from one set to another, and inference is the cheap part of the demo.
    "full": Profile("full", DataSizes(train_videos=64, val_videos=32, frames=12, size=(64, 64)), None),
    # CI's end-to-end test: every file and metric, no accuracy
    "quick": Profile("quick", DataSizes(train_videos=2, val_videos=1, frames=8, size=(48, 64)), 3),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Generate procedural videos, train a small TarViS on "
                                     "all four tasks, run infer.py and the metrics on them, and write a report.")
    parser.add_argument("--out", type=Path, default=Path("tarvis_demo"),
                        help="output folder: new, empty or an earlier demo's (default: ./tarvis_demo)")
    parser.add_argument("--quick", action="store_true", help="a few iterations on tiny videos (the CI test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the videos and of training")
    parser.add_argument("--cfg", type=Path, default=DEFAULT_CONFIG, help="the demo's model and training config")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    # On a quiet 2-core CPU, 2 threads trained the demo's GroupNorm model 1.38x faster than 1 (5.1 against 3.7 it/s);
    # on cores other jobs keep busy, waiting threads cost more than they give (2 threads ran 5x slower than 1 on 2
    # cores at load 5-13): --threads 1 there. More than 2 were never measured, so the default stops at 2.
    parser.add_argument("--threads", type=int, default=min(DEFAULT_MAX_THREADS, usable_cpus()),
                        help=f"CPU threads of torch (default: the usable cores, at most {DEFAULT_MAX_THREADS}; "
                             "1 on a busy machine)")
    add_debug_flag(parser)
    return parser


def _claim_folder(out: Path, profile: Profile, seed: int) -> None:
    """Make `out` the demo's folder, or check that it already is this demo's (same profile and seed)."""
    check_output_dir("--out", out)
    record = {"profile": profile.name, "seed": seed}
    marker = out / MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) != record:
            raise UsageError(f"--out {out}", f"holds a demo run made otherwise ({marker.read_text().strip()}); "
                                             "give another folder")
        return
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}", "is not empty and not a demo's folder; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(marker, "w") as handle:
        json.dump(record, handle)


def _step(text: str) -> float:
    print(f"== {text}", flush=True)
    return time.perf_counter()


def _demo_config(cfg_file: Path, out: Path, profile: Profile) -> Config:
    """configs/demo.yaml with its data paths under `out` made absolute, and the profile's iteration count."""
    cfg = load_config(cfg_file)
    datasets = dict(cfg.datasets)
    for name in cfg.training.dataset_list:
        training = datasets[name].training
        paths = {key: str((out / value).resolve()) for key in ("images", "annotations", "masks")
                 if (value := getattr(training, key)) is not None and not Path(value).is_absolute()}
        datasets[name] = dataclasses.replace(datasets[name], training=dataclasses.replace(training, **paths))
    training = cfg.training
    if profile.iterations is not None:
        training = dataclasses.replace(training, num_iterations=profile.iterations, lr_decay_steps=[],
                                       lr_decay_rates=[], lr_warmup_iterations=0,
                                       checkpoint_save_interval=profile.iterations)
    return dataclasses.replace(cfg, training=training, datasets=datasets)


@contextmanager
def _from_scratch() -> Iterator[None]:
    """No ImageNet weights are bundled: training from scratch is the demo's point, not a mistake to warn about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="no ImageNet weights")
        warnings.filterwarnings("ignore", message="a fine-tuning config")
        yield


def _save_untrained(cfg: Config, folder: Path, seed: int) -> Path:
    """The initial weights that training starts from: built as train.py builds them (same seed, same
    initialisation), so that the untrained row of the table is the trained model before its first step."""
    import torch

    from tarvis_fast.model import build_model
    from tarvis_fast.training.init_weights import init_for_training

    path = folder / "000000.pth"
    if path.is_file():
        return path
    torch.manual_seed(seed)
    model = build_model(cfg)
    with _from_scratch():
        init_for_training(model, cfg, None)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    with atomic_open(path, "wb") as handle:
        torch.save({"model": model.state_dict()}, handle)
    return path


def _train(cfg_file: Path, run: Path, iterations: int, seed: int, device: str) -> Path:
    """Train into `run` (or continue it), unless its final checkpoint exists; returns the final checkpoint."""
    from tarvis_fast.training.cli import main as train_main
    from tarvis_fast.training.run_dir import checkpoint_path, list_checkpoints

    final = checkpoint_path(run, iterations)
    if final.is_file():
        print(f"training: {final} exists, skipped")
        return final
    if run.exists() and list_checkpoints(run):
        argv = ["--restore_session", str(run)]
    else:
        if run.exists():  # started but never saved: nothing to continue
            shutil.rmtree(run)
        argv = ["--model_dir", str(run), "--cfg", str(cfg_file)]
    # about 50 points on the loss curves
    argv += ["--seed", str(seed), "--device", device, "--num_workers", "0",
             "--display_interval", str(max(1, iterations // 50))]
    with _from_scratch():
        _check(train_main(argv))
    if not final.is_file():  # train.py saves and returns on Ctrl-C/SIGTERM; a rerun continues from there
        raise KeyboardInterrupt
    return final


def _check(code: int) -> None:
    """End the demo with a command's failure code: the command has already printed its one `error:` line."""
    if code != 0:
        raise SystemExit(code)


def _benchmark(checkpoint: Path, task: str, out: Path, output_dir: Path, device: str) -> Path:
    """`infer.py --dataset DEMO_* --eval` on the val set through the path flags; returns its eval.json."""
    from tarvis_fast.inference.cli import main as infer_main

    name = TASK_DATASETS[task]
    inputs = DATASETS[name].benchmark.inputs("val")
    argv = [str(checkpoint), "--dataset", name, "--output_dir", str(output_dir), "--device", device, "--eval",
            "--overwrite", "--ground_truth", str(set_folder(out, task, "val") / GROUND_TRUTH[task])]
    for key, path in inputs.items():
        argv += [f"--{key}", str(out / path)]
    _check(infer_main(argv))
    return output_dir / "eval.json"


def _overlay(checkpoint: Path, task: str, out: Path, output_dir: Path, device: str) -> Path:
    """`infer.py --video` on the first val video of `task`, with the references a user would give (VOS: its
    first-frame mask, PET: each object's point on the frame it appears), then re-encoded as VP8 WebM, which the
    report's browser plays (infer.py writes mp4v)."""
    from tarvis_fast.formats import burst
    from tarvis_fast.inference.cli import main as infer_main
    from tarvis_fast.inference.video import OVERLAY_VIDEO, OverlayVideoWriter, open_frames

    folder = set_folder(out, task, "val")
    argv = [str(checkpoint), "--task", task, "--output_dir", str(output_dir), "--device", device, "--overwrite",
            *VIDEO_FLAGS]
    if task in ("vis", "vps"):
        video = sorted((folder / ("JPEGImages" if task == "vis" else "images")).iterdir())[0]
        argv += ["--video", str(video), "--vocabulary", TASK_DATASETS[task].lower()]
    elif task == "vos":
        video = sorted((folder / "JPEGImages" / "480p").iterdir())[0]
        argv += ["--video", str(video), "--masks", str(folder / "Annotations" / "480p" / video.name / "00000.png")]
    else:
        _, sequences = burst.read_burst_annotations(folder / "first_frame_annotations.json")
        seq = sequences[0]
        points = [{"id": e.track_id, "frame": seq.all_image_paths.index(e.image_path), "x": e.point_xy[0],
                   "y": e.point_xy[1]} for e in seq.exemplars()]
        points_file = output_dir.parent / f"{task}_points.json"
        points_file.parent.mkdir(parents=True, exist_ok=True)
        points_file.write_text(json.dumps(points))
        argv += ["--video", str(folder / "frames" / seq.dataset / seq.seq_name), "--points", str(points_file)]
    _check(infer_main(argv))
    webm = output_dir.parent / f"{task}.webm"
    with OverlayVideoWriter(webm, fps=8.0) as writer:
        for frame in open_frames(output_dir / OVERLAY_VIDEO).frames:
            writer.write(frame)
    return webm


def run_demo(out: Path, profile: Profile, seed: int, cfg_file: Path, device: str) -> str:
    """Every step (module docstring); returns the results table as text."""
    from tarvis_fast.demo import report

    started = time.perf_counter()
    _claim_folder(out, profile, seed)
    _step(f"data: {out / 'demo_data'}")
    write_demo_data(out, profile.data, seed)

    cfg = _demo_config(cfg_file, out, profile)
    cfg_path = out / CONFIG_NAME
    save_config(cfg, cfg_path)
    _step("model: the untrained weights")
    untrained = _save_untrained(cfg, out / UNTRAINED, seed)
    t = _step(f"training: {cfg.training.num_iterations} iterations ({cfg.model.backbone}, from scratch)")
    trained = _train(cfg_path, out / RUN, cfg.training.num_iterations, seed, device)
    train_seconds = time.perf_counter() - t

    t = _step("inference and metrics: infer.py --dataset DEMO_* --eval, each task, both models")
    results: dict[str, dict[str, float]] = {}
    for label, checkpoint in (("trained", trained), ("untrained", untrained)):
        eval_files = {task: _benchmark(checkpoint, task, out, out / RESULTS / label / task, device)
                      for task in TASK_DATASETS}
        results[label] = report.scores(eval_files)
    _step("report: loss curves and one overlay video per task")
    videos = {f"{task} ({TASK_DATASETS[task]})":
              str(_overlay(trained, task, out, out / REPORT / "overlays" / task, device).relative_to(out / REPORT))
              for task in TASK_DATASETS}
    report.write_overview(out / REPORT / "overview.png", {task: out / REPORT / src for task, src in videos.items()})
    report.plot_losses(report.read_losses(out / RUN / "logs" / "out.log"), out / REPORT / "loss.png")
    rows = report.table_rows(results["trained"], results["untrained"])
    table = report.format_table(rows)
    total = time.perf_counter() - started
    notes = [f"{PROG} --out {out}{' --quick' if profile.name == 'quick' else ''} --seed {seed}",
             f"config: {cfg_path} ({cfg.model.backbone}, {cfg.training.num_iterations} iterations of "
             f"{cfg.training.batch_size} clips of {cfg.training.clip_length} frames)",
             f"data: {profile.data.train_videos} train and {profile.data.val_videos} val videos per task, "
             f"{profile.data.frames} frames of {profile.data.size[0]}x{profile.data.size[1]}",
             f"training {train_seconds:.0f} s (0 when skipped), whole run {total:.0f} s on {device}"]
    report.write_html(out / REPORT / "index.html", rows, "loss.png", videos, notes)
    with atomic_open(out / REPORT / "results.json", "w") as handle:
        json.dump({"scores": results, "notes": notes}, handle, indent=1)
    print(table)
    print(f"report: {out / REPORT / 'index.html'}  ({total:.0f} s in all)")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (bad input: one line on stderr and 2, as `cli_errors.run_cli` says)."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.cfg.is_file():
        raise UsageError(f"--cfg {args.cfg}", "config file not found")
    if args.threads < 1:
        raise UsageError(f"--threads {args.threads}", "must be at least 1")
    profile = PROFILES["quick" if args.quick else "full"]
    import torch

    torch.set_num_threads(args.threads)
    run_demo(args.out, profile, args.seed, args.cfg, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
