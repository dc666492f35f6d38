"""`infer.py` / `tarvis-infer`: a benchmark in its official format, or your own video.

    tarvis-infer CHECKPOINT --dataset {YOUTUBE_VIS,OVIS,DAVIS,BURST,KITTI_STEP,CITYSCAPES_VPS,VIPSEG} --output_dir D
                 [--split S] [--seq_names A B ...] [--seq_split i/n] [--resume] [--eval] [--images P ...]
    tarvis-infer CHECKPOINT --video PATH --task {vos,pet,vis,vps} --output_dir D
                 [--masks first.png | --masks 0:a.png,30:b.png] [--points "x,y;x,y" | --points points.json]
                 [--vocabulary youtube_vis|ovis|kitti_step|cityscapes_vps|vipseg]
    common:      [--amp] [--compile] [--device cuda:0] [--clip_length N] [--frame_overlap N] [--min_dim N]
                 [--disable_resize] [--final_clip original|consistent] [--overlap_points original|once]
                 [--cfg.KEY VALUE ...]

The checkpoint's `config.yaml` (beside it) describes the network and each dataset's inference settings;
`--cfg.datasets.DAVIS.inference.clip_length 8` and the like override it, and the flags of the original
(`--clip_length`, `--frame_overlap`, `--min_dim`, `--disable_resize`, `--split`) override the settings of the run.

Benchmarks: inputs under `$TARVIS_WORKSPACE_DIR` (or `--workspace`) in the original's layout, each replaceable by
its flag (`--images`, `--annotations`, `--image_set`; `--ground_truth` for `--eval`); see `readers.py`. Each
finished sequence is recorded, so `--resume` skips it, and shards (`--seq_split i/n`, `--seq_names`) can run in
several processes into one output folder: the official files are assembled by whichever finishes the last one.

Your video (a video file or a folder of frames) writes mask PNGs, `masks.json` and `overlay.mp4` into the output
folder (see `video.py`).
`--masks` takes palette or 8-bit id PNGs (0 = background; every other value is an object id): one for frame 0, or
`frame:path` pairs separated by commas. `--points` takes `x,y` pixel pairs separated by `;` (objects 1, 2, ... on
frame 0), or a JSON file `[{"id": 1, "frame": 0, "x": 120, "y": 80}, ...]` ("id" and "frame" optional).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tarvis_fast.config import (
    Config,
    ConfigError,
    DatasetInferenceConfig,
    load_config,
    split_overrides,
)
from tarvis_fast.datasets import BENCHMARKS, vocabulary
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.davis import read_label_png
from tarvis_fast.inference.predictor import TASKS, VOCABULARIES, VideoPredictor
from tarvis_fast.inference.readers import PATH_KEYS, open_benchmark
from tarvis_fast.inference.runner import (
    ClipRunner,
    ClipSettings,
    Request,
    VisRequest,
    VosRequest,
    VpsRequest,
)
from tarvis_fast.inference.sequences import Benchmark, SequenceInfo, select_sequences
from tarvis_fast.inference.video import open_frames, read_image_rgb, write_video_outputs
from tarvis_fast.inference.writers import ResultWriter, open_writer
from tarvis_fast.model.build import load_model
from tarvis_fast.tasks import Task

PROG = "tarvis-infer"
EVAL_JSON = "eval.json"
DEFAULT_FPS = 10.0  # overlay frame rate when the source does not say (a folder of frames)


class UsageError(ValueError):
    """A flag, or a file a flag names, is unusable; the message names it."""


# ============================================================================================== arguments

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     epilog="Config overrides: --cfg.KEY VALUE (e.g. --cfg.datasets.DAVIS.inference."
                                            "clip_length 8).")
    parser.add_argument("checkpoint", type=Path, help="the .pth file; its config.yaml lies beside it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=BENCHMARKS, help="run a benchmark")
    source.add_argument("--video", type=Path, help="run your own video: a video file or a folder of frames")
    parser.add_argument("--output_dir", type=Path, required=True)

    run = parser.add_argument_group("running")
    run.add_argument("--amp", action="store_true", help="bf16 autocast where the device supports it")
    run.add_argument("--compile", action="store_true", help="torch.compile the network once for the run")
    run.add_argument("--device", help="default: cuda if available, else cpu")
    run.add_argument("--trust_checkpoint", action="store_true",
                     help="unpickle arbitrary objects in the checkpoint (only for files you trust)")
    run.add_argument("--clip_length", type=int, help="frames per clip")
    run.add_argument("--frame_overlap", type=int, help="frames shared by consecutive clips")
    run.add_argument("--min_dim", type=int, help="resize the shorter side to this (longer side capped by the config)")
    run.add_argument("--disable_resize", action="store_true", help="run at the frames' own size")
    run.add_argument("--final_clip", choices=("original", "consistent"),
                     help="VOS/PET: stitch the last clip as the original does (the default with --dataset, to "
                          "reproduce its numbers) or like every other clip (the default with --video)")
    run.add_argument("--overlap_points", choices=("original", "once"),
                     help="PET: a point on a frame two clips share is given to the second clip too, beside its "
                          "object's propagated mask, as the original does (the default with --dataset), or used "
                          "once (the default with --video)")

    bench = parser.add_argument_group("benchmarks (--dataset)")
    bench.add_argument("--split", help="e.g. val, testdev (DAVIS), test (BURST, VIPSeg)")
    bench.add_argument("--seq_names", nargs="+", metavar="NAME", help="run only these sequences")
    bench.add_argument("--seq_split", metavar="i/n", help="run the i-th (1-based) of n equal shards of the sequences")
    bench.add_argument("--resume", action="store_true", help="skip sequences whose results are already written")
    bench.add_argument("--eval", action="store_true", help="score the results with the built-in metric")
    bench.add_argument("--workspace", type=Path, help="default: $TARVIS_WORKSPACE_DIR")
    for key, what in PATH_KEYS.items():
        bench.add_argument(f"--{key}", type=Path, help=what)

    video = parser.add_argument_group("your video (--video)")
    video.add_argument("--task", choices=TASKS)
    video.add_argument("--masks", help="vos: first.png, or frame:path pairs, comma-separated (0:a.png,30:b.png)")
    video.add_argument("--points", help='pet: "x,y;x,y" on frame 0, or a JSON file with frame indices')
    video.add_argument("--vocabulary", choices=[v for vs in VOCABULARIES.values() for v in vs],
                       help="vis: youtube_vis | ovis; vps: kitti_step | cityscapes_vps | vipseg")
    return parser


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that make no sense together fail before any work, naming the flag."""
    if args.min_dim is not None and args.disable_resize:
        parser.error("--min_dim and --disable_resize exclude each other")
    for flag in ("clip_length", "min_dim"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be positive")
    if args.frame_overlap is not None and args.frame_overlap < 0:
        parser.error("--frame_overlap must be >= 0")
    video_flags = [f for f in ("task", "masks", "points", "vocabulary") if getattr(args, f) is not None]
    bench_flags = [f for f in ("split", "seq_names", "seq_split", "workspace", *PATH_KEYS) if getattr(args, f)]
    bench_flags += [f for f in ("resume", "eval") if getattr(args, f)]
    if args.dataset and video_flags:
        parser.error(f"--{video_flags[0]} is for --video runs")
    if args.video and bench_flags:
        parser.error(f"--{bench_flags[0]} is for --dataset runs")
    if args.video and args.task is None:
        parser.error("--video needs --task")
    needs = {"vos": ("masks", "first.png"), "pet": ("points", '"x,y;x,y"'),
             **{task.short_name: ("vocabulary", " | ".join(VOCABULARIES[task])) for task in VOCABULARIES}}
    if args.task is not None:
        flag, example = needs[args.task]
        if getattr(args, flag) is None:
            parser.error(f"--task {args.task} needs --{flag} {example}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        rest, overrides = split_overrides(sys.argv[1:] if argv is None else list(argv))
    except ConfigError as err:
        parser.error(str(err))
    args = parser.parse_args(rest)
    _check_flags(parser, args)
    try:
        cfg = _load_config(args.checkpoint, overrides)
        if args.dataset:
            run_benchmark(args, cfg)
        else:
            run_video(args, cfg)
    except (ValueError, FileNotFoundError) as err:  # bad inputs; their messages name the flag or file
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _load_config(checkpoint: Path, overrides: Sequence[str]) -> Config:
    if not checkpoint.is_file():
        raise FileNotFoundError(f"CHECKPOINT {checkpoint}: file not found")
    config_path = checkpoint.parent / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"CHECKPOINT {checkpoint}: no config.yaml beside it ({config_path})")
    return load_config(config_path, overrides)


def _clip_settings(args: argparse.Namespace, cfg: Config, dataset: str) -> ClipSettings:
    return ClipSettings.from_config(cfg.datasets[dataset].inference, clip_length=args.clip_length,
                                    frame_overlap=args.frame_overlap, min_dim=args.min_dim,
                                    disable_resize=args.disable_resize)


# ============================================================================================== benchmarks

def run_benchmark(args: argparse.Namespace, cfg: Config) -> None:
    """One benchmark (or a shard of it) into `args.output_dir` in the official format; then, with --eval, its
    metric when every sequence is done."""
    paths = {key: getattr(args, key) for key in PATH_KEYS}
    benchmark = open_benchmark(args.dataset, cfg, workspace=args.workspace, paths=paths, split=args.split)
    inference = cfg.datasets[benchmark.name].inference
    settings = _clip_settings(args, cfg, benchmark.name)
    sequences = select_sequences(benchmark.sequences(), args.seq_names, args.seq_split)
    writer = open_writer(benchmark, args.output_dir)
    todo = [seq for seq in sequences if not (args.resume and writer.is_done(seq))]
    print(f"{benchmark.name} ({benchmark.split}): {len(sequences)} sequences selected, {len(todo)} to run "
          f"-> {args.output_dir}", file=sys.stderr)

    if todo:
        model = load_model(args.checkpoint, config=cfg, trusted=args.trust_checkpoint)
        runner = ClipRunner(model, device=args.device, amp=args.amp, compile=args.compile, progress=True)
        for seq in tqdm(todo, desc=benchmark.name, unit="video"):
            task = _benchmark_request(benchmark, seq, inference, consistent_final_clip=args.final_clip == "consistent",
                                   reuse_points_on_overlap=args.overlap_points != "once")
            frames = (read_image_rgb(path) for path in seq.frames)
            writer.write_sequence(seq, runner.run(frames, len(seq.frames), (seq.height, seq.width), task, settings,
                                                  name=seq.name))
        print(runner.stats.summary(), file=sys.stderr)

    for path in writer.close():
        print(f"wrote {path}", file=sys.stderr)
    if args.eval:
        _evaluate(benchmark, writer, args.output_dir)


def _benchmark_request(benchmark: Benchmark, seq: SequenceInfo, inference: DatasetInferenceConfig, *,
                    consistent_final_clip: bool, reuse_points_on_overlap: bool) -> Request:
    if benchmark.task.guided_by_objects:
        return VosRequest(seq.references, consistent_final_clip, reuse_points_on_overlap)
    if benchmark.task is Task.VIS:
        return VisRequest.from_config(benchmark.name, inference)
    return VpsRequest.from_config(benchmark.name, benchmark.thing_classes, inference)


def _evaluate(benchmark: Benchmark, writer: ResultWriter, output_dir: Path) -> None:
    """The benchmark's metric on the assembled results, printed and written to eval.json."""
    from tarvis_fast.evaluation.__main__ import (
        evaluate,  # the metrics' imports are only paid for with --eval
    )

    if benchmark.ground_truth is None:
        print("--eval: no ground truth: give it with --ground_truth", file=sys.stderr)
        return
    missing = writer.missing()
    if missing:
        print(f"--eval: skipped, the benchmark is not complete ({len(missing)} sequences without results)",
              file=sys.stderr)
        return
    stats = evaluate(benchmark.metric, writer.prediction_path, benchmark.ground_truth)
    with atomic_open(output_dir / EVAL_JSON, "w") as handle:
        json.dump(stats, handle, indent=1)
    headline = {key: value for key, value in stats.items() if isinstance(value, (int, float))}
    for key, value in headline.items():
        print(f"{key:<24} {value:.6f}" if isinstance(value, float) else f"{key:<24} {value}")
    print(f"wrote {output_dir / EVAL_JSON}", file=sys.stderr)


# ============================================================================================== your video

def run_video(args: argparse.Namespace, cfg: Config) -> None:
    """The user's video through `VideoPredictor`; masks, RLE JSON and an overlay video into `args.output_dir`."""
    meta = open_frames(args.video)
    first = next(meta.frames, None)  # its size, to check --masks before the model loads
    if first is None:
        raise UsageError(f"--video {args.video}: no frames")
    size = first.shape[:2]
    masks = parse_masks(args.masks, size) if args.masks is not None else None
    points = parse_points(args.points) if args.points is not None else None

    model = load_model(args.checkpoint, config=cfg, trusted=args.trust_checkpoint)
    predictor = VideoPredictor(model, cfg, device=args.device, amp=args.amp, compile=args.compile, progress=True)
    results = predictor.segment(args.video, args.task, masks=masks, points=points, vocabulary=args.vocabulary,
                                clip_length=args.clip_length, frame_overlap=args.frame_overlap, min_dim=args.min_dim,
                                disable_resize=args.disable_resize, consistent_final_clip=args.final_clip != "original",
                                reuse_points_on_overlap=args.overlap_points == "original")
    names = vocabulary(args.vocabulary).names if args.vocabulary else ()
    write_video_outputs(args.output_dir, results, meta.names, meta.fps or DEFAULT_FPS,
                        source=str(args.video), task=args.task, vocabulary=args.vocabulary, class_names=names)
    print(predictor.runner.stats.summary(), file=sys.stderr)


def parse_masks(spec: str, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """--masks: "first.png" (frame 0) or "0:a.png,30:b.png" -> {frame: (H, W) id map}."""
    items = spec.split(",")
    masks: dict[int, np.ndarray] = {}
    for item in items:
        match = re.fullmatch(r"(\d+):(.+)", item.strip())
        if match is None and len(items) > 1:
            raise UsageError(f"--masks: {item!r} is not 'frame:path' (several masks need a frame index each)")
        frame, path = (int(match[1]), Path(match[2])) if match else (0, Path(item.strip()))
        if frame in masks:
            raise UsageError(f"--masks: frame {frame} is given twice")
        try:
            labels = read_label_png(path, shape=size)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(f"--masks: {err}") from None
        if not labels.any():
            raise UsageError(f"--masks: {path} holds no object (every pixel is 0)")
        masks[frame] = labels
    return masks


def parse_points(spec: str) -> dict[int, tuple[int, tuple[float, float]]]:
    """--points: "x,y;x,y" (objects 1, 2, ... on frame 0) or a JSON file -> {object id: (frame, (x, y))}."""
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        return _points_from_json(path)
    points = {}
    for object_id, item in enumerate(spec.split(";"), 1):
        try:
            x, y = (float(v) for v in item.split(","))
        except ValueError:
            raise UsageError(f"--points: {item!r} is not an 'x,y' pair (give \"x,y;x,y\" or a JSON file)") from None
        points[object_id] = (0, (x, y))
    return points


def _points_from_json(path: Path) -> dict[int, tuple[int, tuple[float, float]]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--points: {path}: file not found") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--points: {path}: not valid JSON ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f'--points: {path}: expected a list like [{{"id": 1, "frame": 0, "x": 120, "y": 80}}]')
    points = {}
    for index, entry in enumerate(entries):
        where = f"--points: {path}: entry {index}"
        if not isinstance(entry, dict) or not {"x", "y"} <= set(entry) or set(entry) - {"id", "frame", "x", "y"}:
            raise UsageError(f'{where}: expected {{"id", "frame", "x", "y"}} ("id" and "frame" optional), got {entry}')
        try:
            object_id, frame = int(entry.get("id", index + 1)), int(entry.get("frame", 0))
            point = (float(entry["x"]), float(entry["y"]))
        except (TypeError, ValueError):
            raise UsageError(f"{where}: id and frame must be integers, x and y numbers, got {entry}") from None
        if object_id in points:
            raise UsageError(f"{where}: object {object_id} is given twice")
        points[object_id] = (frame, point)
    return points


if __name__ == "__main__":
    sys.exit(main())
