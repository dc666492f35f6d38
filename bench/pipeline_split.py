"""Where an inference run's time goes on the CPU: decode, model, stitch and write, against the model alone (issue 17).

    python bench/pipeline_split.py [--frames 50] [--min_dim 240] [--rounds 2] [--runs video davis]
    python bench/pipeline_split.py --memory 16 64 256 [--min_dim 240]

Input: the real DAVIS clip horsejump-high (50 frames, 854x480, 2 objects; found as bench/test_bench_davis.py finds
it), VOS from its first-frame annotation. Model: the fine-tuning configuration (ResNet-50) with random weights
(speed does not depend on them), fp32 on the CPU; `--min_dim` resizes the frames for the network as
`infer.py --min_dim` does (decoding and writing stay at 854x480). Two runs:
- "video": the clip as an .mp4 (looped back and forth to `--frames`) through `VideoPredictor.segment` and
  `write_video_outputs`, as `infer.py --video` runs it;
- "davis": the clip as a DAVIS benchmark through `ClipRunner` and the DAVIS writer, as `infer.py --dataset DAVIS`.

Per run, in one process, alternating (a busy machine slows both sides alike), `--rounds` times: the model alone
(the run's forwards on the same inputs, recorded in a warm-up run and replayed) and the whole run. Printed per run:
wall time of each, their ratio, the busy time of each stage (`RunStats.stage_seconds`; decode and write run in
background threads, so stages overlap), the system share of the CPU time and the minor page faults (getrusage, all
threads), and the load average. `--memory` runs the video in a fresh process per length and prints each one's peak
resident size (it should not grow with the length).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import torch

from tarvis_fast.config import Config, load_config
from tarvis_fast.formats.davis import read_label_png
from tarvis_fast.inference.predictor import VideoPredictor
from tarvis_fast.inference.readers import open_benchmark
from tarvis_fast.inference.runner import ClipRunner, ClipSettings, RunStats, VosRequest
from tarvis_fast.inference.video import write_video_outputs
from tarvis_fast.inference.writers import open_writer
from tarvis_fast.model import build_model

SEQUENCE = "horsejump-high"
SHARED_DATA = Path(os.environ.get("TARVIS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune_resnet50_swin-tiny.yaml"


def clip_folder() -> Path:
    clip = SHARED_DATA / "davis"
    if not (clip / "JPEGImages" / SEQUENCE).is_dir():
        sys.exit(f"the DAVIS clip is not under {clip} (set TARVIS_SHARED_DATA)")
    return clip


def build(backbone: str) -> tuple[torch.nn.Module, Config]:
    cfg = load_config(CONFIG)
    cfg = replace(cfg, model=replace(cfg.model, backbone=backbone, kernel_backend="torch"))
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def write_video(path: Path, frames: int) -> Path:
    """The clip's frames as an .mp4, played forwards then backwards until `frames` frames."""
    images = sorted((clip_folder() / "JPEGImages" / SEQUENCE).glob("*.jpg"))
    order = images + images[-2:0:-1]
    first = cv2.imread(str(images[0]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (first.shape[1], first.shape[0]))
    for t in range(frames):
        writer.write(cv2.imread(str(order[t % len(order)])))
    writer.release()
    return path


def davis_workspace(base: Path) -> dict[str, Path]:
    """The clip as a one-sequence DAVIS benchmark (symlinks); the `paths=` of `open_benchmark`."""
    clip = clip_folder()
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    (base / "images" / SEQUENCE).symlink_to(clip / "JPEGImages" / SEQUENCE)
    (base / "annotations" / SEQUENCE).symlink_to(clip / "osvos" / SEQUENCE)
    (base / "val.txt").write_text(SEQUENCE + "\n")
    return {"images": base / "images", "annotations": base / "annotations", "image_set": base / "val.txt"}


@dataclass
class Usage:
    """What a stretch of the process cost: wall, user and system seconds, minor page faults."""

    wall: float = 0.0
    user: float = 0.0
    system: float = 0.0
    faults: int = 0

    def add(self, run: Callable[[], None]) -> None:
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run()
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.wall += time.perf_counter() - started
        self.user += after.ru_utime - before.ru_utime
        self.system += after.ru_stime - before.ru_stime
        self.faults += after.ru_minflt - before.ru_minflt

    def line(self, rounds: int) -> str:
        share = self.system / (self.user + self.system) if self.user + self.system else 0.0
        return (f"wall {self.wall / rounds:7.1f} s, user {self.user / rounds:7.1f} s, system {self.system / rounds:5.1f}"
                f" s ({share:.1%} of CPU time), {self.faults / rounds / 1e6:.2f} M minor faults")


class Recorder:
    """The inputs of each forward of a model, to replay them as "the model alone"."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls = model, []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls.append((args, kwargs))

    def stop(self) -> None:
        self._handle.remove()

    def replay(self) -> None:
        with torch.inference_mode():
            for args, kwargs in self.calls:
                self.model(*args, **kwargs)


def video_run(model: torch.nn.Module, cfg: Config, base: Path, frames: int,
              min_dim: int | None) -> Callable[[], RunStats]:
    """The own-video run (a fresh output folder each call); returns a function that runs it and gives its stats."""
    video = write_video(base / "video.mp4", frames)
    masks = {0: read_label_png(clip_folder() / "osvos" / SEQUENCE / "00000.png")}
    predictor = VideoPredictor(model, cfg, device="cpu")
    calls = iter(range(10**6))

    def run() -> RunStats:
        predictor.runner.stats = RunStats()
        results = predictor.segment(video, "vos", masks=masks, min_dim=min_dim)
        predictor.runner.stats.add("write", write_video_outputs(
            base / f"out{next(calls)}", results, None, 24.0, source=str(video), task="vos", vocabulary=None,
            class_names=()))
        return predictor.runner.stats

    return run


def davis_run(model: torch.nn.Module, cfg: Config, base: Path, min_dim: int | None) -> Callable[[], RunStats]:
    """The DAVIS benchmark run of the clip (a fresh output folder each call)."""
    benchmark = open_benchmark("DAVIS", cfg, paths=davis_workspace(base / "davis"))
    settings = ClipSettings.from_config(cfg.datasets["DAVIS"].inference, min_dim=min_dim)
    runner = ClipRunner(model, device="cpu")
    calls = iter(range(10**6))

    def run() -> RunStats:
        from tarvis_fast.inference.video import read_image_rgb

        runner.stats = RunStats()
        writer = open_writer(benchmark, base / f"davis_out{next(calls)}")
        for seq in benchmark.sequences():
            frames = (read_image_rgb(path) for path in seq.frames)
            results = runner.run(frames, len(seq.frames), (seq.height, seq.width), VosRequest(seq.references),
                                 settings, name=seq.name)
            runner.stats.add("write", writer.write_sequence(seq, results))
        return runner.stats

    return run


def split(name: str, run: Callable[[], RunStats], model: torch.nn.Module, rounds: int) -> None:
    recorder = Recorder(model)
    run()  # warm-up: records the forwards' inputs
    recorder.stop()
    alone, whole = Usage(), Usage()
    stages = dict.fromkeys(RunStats().stage_seconds, 0.0)
    runs: list[RunStats] = []
    for _ in range(rounds):
        alone.add(recorder.replay)
        whole.add(lambda: runs.append(run()))
    for stats in runs:
        for stage, seconds in stats.stage_seconds.items():
            stages[stage] += seconds
    load = os.getloadavg()
    print(f"\n{name}: {len(recorder.calls)} forwards, {rounds} rounds, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}")
    print(f"  model alone: {alone.line(rounds)}")
    print(f"  whole run:   {whole.line(rounds)}")
    print(f"  whole / model alone: {whole.wall / alone.wall:.3f}")
    print("  busy per run: " + ", ".join(f"{stage} {seconds / rounds:.1f} s" for stage, seconds in stages.items()))


def memory(lengths: list[int], min_dim: int | None, backbone: str) -> None:
    """Peak RSS of the video run per length, each in a fresh process."""
    for frames in lengths:
        command = [sys.executable, __file__, "--runs", "video", "--rounds", "0", "--frames", str(frames),
                   "--backbone", backbone] + (["--min_dim", str(min_dim)] if min_dim else [])
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(f"{frames:4d} frames: {out.strip().splitlines()[-1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50, help="length of the own video (the clip looped)")
    parser.add_argument("--min_dim", type=int, help="the network's shorter side (default: the frames' own, 480)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", nargs="+", choices=("video", "davis"), default=["video", "davis"])
    parser.add_argument("--backbone", default="ResNet50")
    parser.add_argument("--memory", type=int, nargs="+", metavar="FRAMES", help="peak RSS per video length")
    args = parser.parse_args()
    if args.memory:
        memory(args.memory, args.min_dim, args.backbone)
        return
    model, cfg = build(args.backbone)
    print(f"torch threads {torch.get_num_threads()}, backbone {args.backbone}, min_dim {args.min_dim}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pipeline-split-") as tmp:
        base = Path(tmp)
        for name in args.runs:
            run = (video_run(model, cfg, base, args.frames, args.min_dim) if name == "video"
                   else davis_run(model, cfg, base, args.min_dim))
            if args.rounds == 0:  # --memory's child: one run, then the peak RSS
                run()
                print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
            else:
                split(name, run, model, args.rounds)


if __name__ == "__main__":
    main()
