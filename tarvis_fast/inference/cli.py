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

Your video (a video file or a folder of frames) writes mask PNGs, `masks.json`, `overlay.mp4` and `run.json` (what
the run was) into the output folder (see `video.py`). A folder holding another run's results is refused unless
`--overwrite` (which deletes those results first); `--resume` finishes a run that was interrupted, with the same
flags, by running the video again from its start (nothing if it had finished), so that its files end up as an
uninterrupted run's.
`--masks` takes palette or 8-bit id PNGs (0 = background, 255 = void and ignored as in DAVIS annotations; every
other value is an object id): one for frame 0, or `frame:path` pairs separated by commas. `--points` takes `x,y`
pixel pairs separated by `;` (objects 1, 2, ... on frame 0; `--points "-5,10"` and `--points=-5,10` both work), or
a JSON file `[{"id": 1, "frame": 0, "x": 120, "y": 80}, ...]` ("id" and "frame" optional).

Errors (see `cli_errors.py`): a bad flag or input file ends the run with one line `error: <path or flag>: <what is
wrong>` and exit code 2, before the model is loaded where it can be known then; `--debug` shows the traceback.
torch and the model are imported only after the flags and files have been checked.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tarvis_fast.cli_errors import (
    UsageError,
    add_debug_flag,
    check_device_available,
    check_device_name,
    check_output_dir,
    run_cli,
)
from tarvis_fast.config import (
    Config,
    DatasetInferenceConfig,
    load_checkpoint_config,
    semantic_classes,
    split_overrides,
)
from tarvis_fast.datasets import BENCHMARKS, vocabulary
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.checkpoint import check_checkpoint_file
from tarvis_fast.formats.davis import VOID_ID, read_label_png
from tarvis_fast.formats.run_record import (
    differing_keys,
    read_run_record,
    write_run_record,
)
from tarvis_fast.inference.readers import PATH_KEYS, open_benchmark
from tarvis_fast.inference.sequences import Benchmark, SequenceInfo, select_sequences
from tarvis_fast.inference.video import (
    TASKS,
    VOCABULARIES,
    clear_video_outputs,
    open_frames,
    settings_dataset,
    video_output_files,
)
from tarvis_fast.tasks import Task

if TYPE_CHECKING:  # the modules that import torch are imported where the run starts, after every check
    from tarvis_fast.inference.runner import ClipSettings, Request
    from tarvis_fast.inference.writers import ResultWriter

PROG = "tarvis-infer"
EVAL_JSON = "eval.json"
DEFAULT_FPS = 10.0  # overlay frame rate when the source does not say (a folder of frames)
NEGATIVE_VALUE_FLAGS = ("--points",)  # flags whose value may start with a minus sign


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
    run.add_argument("--resume", action="store_true",
                     help="--dataset: skip sequences whose results are already written; --video: finish an "
                          "interrupted run with the same flags")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the results of another run in --output_dir (by default such a folder is refused)")
    bench.add_argument("--eval", action="store_true", help="score the results with the built-in metric")
    bench.add_argument("--workspace", type=Path, help="default: $TARVIS_WORKSPACE_DIR")
    for key, what in PATH_KEYS.items():
        bench.add_argument(f"--{key}", type=Path, help=what)

    video = parser.add_argument_group("your video (--video)")
    video.add_argument("--task", choices=TASKS)
    video.add_argument("--masks", help="vos: first.png, or frame:path pairs, comma-separated (0:a.png,30:b.png); "
                                       "ids 1-254 are objects, 0 background, 255 void (ignored, as in DAVIS)")
    video.add_argument("--points", help='pet: "x,y;x,y" on frame 0, or a JSON file with frame indices')
    video.add_argument("--vocabulary", choices=[v for vs in VOCABULARIES.values() for v in vs],
                       help="vis: youtube_vis | ovis; vps: kitti_step | cityscapes_vps | vipseg")
    add_debug_flag(parser)
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
    bench_flags += ["eval"] if args.eval else []
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    if args.dataset and video_flags:
        parser.error(f"--{video_flags[0]} is for --video runs")
    if args.video and bench_flags:
        parser.error(f"--{bench_flags[0]} is for --dataset runs")
    if args.video and args.task is None:
        parser.error("--video needs --task")
    needs = {"vos": ("masks", "first.png"), "pet": ("points", '"x,y;x,y"'),
             **{task.short_name: ("vocabulary", " | ".join(names)) for task, names in VOCABULARIES.items()}}
    if args.task is not None:
        flag, example = needs[args.task]
        if getattr(args, flag) is None:
            parser.error(f"--task {args.task} needs --{flag} {example}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 for a bad flag or input, with one line on stderr)."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    rest, overrides = split_overrides(_join_negative_values(argv))
    args = parser.parse_args(rest)
    _check_flags(parser, args)
    # Everything below up to the model load is cheap and torch-free, except the CUDA check just before it.
    check_checkpoint_file(args.checkpoint)
    cfg = load_checkpoint_config(args.checkpoint, overrides)
    check_output_dir("--output_dir", args.output_dir)
    check_device_name("--device", args.device)
    if args.dataset:
        run_benchmark(args, cfg, overrides)
    else:
        run_video(args, cfg, overrides)
    return 0


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """argparse takes a value that starts with '-' for a flag unless it is a plain number, so `--points "-5,10"`
    would fail as "expected one argument": join such a value to its flag, as `--points=-5,10` is written."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_VALUE_FLAGS and i + 1 < len(argv) and re.match(r"-\.?\d", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _check_clip_flags(args: argparse.Namespace, inference: DatasetInferenceConfig, task: Task) -> None:
    """--clip_length and --frame_overlap against each other, the config's values and the task (what
    `clips.clip_schedule` and VOS/PET propagation need), before the model loads."""
    clip_length = args.clip_length if args.clip_length is not None else inference.clip_length
    frame_overlap = args.frame_overlap if args.frame_overlap is not None else inference.frame_overlap
    where = " ".join(f"--{name} {getattr(args, name)}" for name in ("clip_length", "frame_overlap")
                     if getattr(args, name) is not None) or "the config's clip_length and frame_overlap"
    if 2 * frame_overlap > clip_length:
        raise UsageError(where, f"the overlap of clips ({frame_overlap} frames) must be at most half a clip "
                                f"({clip_length} frames): a frame may lie in two clips, not three")
    if task.guided_by_objects and frame_overlap < 1:
        raise UsageError(where, f"{task.short_name.upper()} carries each object into the next clip through the "
                                "frames two clips share: the overlap must be at least 1")


def _clip_settings(args: argparse.Namespace, cfg: Config, dataset: str) -> ClipSettings:
    from tarvis_fast.inference.runner import ClipSettings

    return ClipSettings.from_config(cfg.datasets[dataset].inference, clip_length=args.clip_length,
                                    frame_overlap=args.frame_overlap, min_dim=args.min_dim,
                                    disable_resize=args.disable_resize)


# ============================================================================================== benchmarks

def run_benchmark(args: argparse.Namespace, cfg: Config, overrides: Sequence[str]) -> None:
    """One benchmark (or a shard of it) into `args.output_dir` in the official format; then, with --eval, its
    metric when every sequence is done."""
    paths = {key: getattr(args, key) for key in PATH_KEYS}
    benchmark = open_benchmark(args.dataset, cfg, workspace=args.workspace, paths=paths, split=args.split)
    inference = cfg.datasets[benchmark.name].inference
    _check_clip_flags(args, inference, benchmark.task)
    sequences = select_sequences(benchmark.sequences(), args.seq_names, args.seq_split)

    from tqdm import tqdm

    from tarvis_fast.inference.runner import ClipRunner
    from tarvis_fast.inference.video import read_image_rgb
    from tarvis_fast.inference.writers import open_writer
    from tarvis_fast.model.build import load_model

    check_device_available("--device", args.device)
    settings = _clip_settings(args, cfg, benchmark.name)
    writer = open_writer(benchmark, args.output_dir)
    _prepare_benchmark_output(args, writer, _benchmark_run_record(args, benchmark, overrides))
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
            results = runner.run(frames, len(seq.frames), (seq.height, seq.width), task, settings, name=seq.name)
            runner.stats.add("write", writer.write_sequence(seq, results))
        print(runner.stats.summary(), file=sys.stderr)

    for path in writer.close():
        print(f"wrote {path}", file=sys.stderr)
    if args.eval:
        _evaluate(benchmark, writer, args.output_dir)


# Benchmark runs into one folder may differ in which sequences they run (--seq_split, --seq_names: shards of one run)
# but in nothing that changes a sequence's results.
BENCHMARK_RESULT_FLAGS = ("amp", "clip_length", "frame_overlap", "min_dim", "disable_resize", "final_clip",
                          "overlap_points")


def _benchmark_run_record(args: argparse.Namespace, benchmark: Benchmark, overrides: Sequence[str]) -> dict[str, Any]:
    run: dict[str, Any] = {flag: getattr(args, flag) for flag in BENCHMARK_RESULT_FLAGS}
    run.update(dataset=benchmark.name, split=benchmark.split, checkpoint=str(args.checkpoint.resolve()),
               inputs={key: str(Path(path).resolve()) for key, path in benchmark.paths.items()
                       if key != "ground_truth"},
               cfg_overrides=list(overrides))
    return run


def _prepare_benchmark_output(args: argparse.Namespace, writer: ResultWriter, run: dict[str, Any]) -> None:
    """Refuse an output folder holding another run's results (a run is the checkpoint, the inputs and every flag
    that changes results; shards of one run share it) unless --overwrite, which deletes them first; then record
    this run. The record is never marked complete: the writer's parts say which sequences are done."""
    flag = f"--output_dir {args.output_dir}"
    record = read_run_record(args.output_dir)
    if args.overwrite:
        writer.clear()
    elif record is None and writer.written_paths():
        raise UsageError(flag, "holds benchmark results without a run record (run.json); give --overwrite to "
                               "replace them")
    elif record is not None and record[0] != run:
        differing = ", ".join(differing_keys(run, record[0]))
        raise UsageError(flag, f"holds the results of another run (differing: {differing}); give --overwrite to "
                               "replace them, or another --output_dir")
    if args.overwrite or record is None:
        write_run_record(args.output_dir, run, complete=False)


def _benchmark_request(benchmark: Benchmark, seq: SequenceInfo, inference: DatasetInferenceConfig, *,
                       consistent_final_clip: bool, reuse_points_on_overlap: bool) -> Request:
    from tarvis_fast.inference.runner import VisRequest, VosRequest, VpsRequest

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

def run_video(args: argparse.Namespace, cfg: Config, overrides: Sequence[str]) -> None:
    """The user's video through `VideoPredictor`; masks, RLE JSON, overlay video and run record into
    `args.output_dir`."""
    task = Task.parse(args.task)
    if task in VOCABULARIES and args.vocabulary not in VOCABULARIES[task]:
        raise UsageError(f"--vocabulary {args.vocabulary}", f"--task {args.task} takes one of "
                                                            f"{', '.join(VOCABULARIES[task])}")
    dataset = settings_dataset(task, args.vocabulary)
    if task in VOCABULARIES and dataset not in semantic_classes(cfg):
        raise UsageError(f"--vocabulary {args.vocabulary}", f"the model has no semantic queries for {dataset} (it "
                                                            f"was trained with: {', '.join(semantic_classes(cfg))})")
    _check_clip_flags(args, cfg.datasets[dataset].inference, task)
    meta = open_frames(args.video)
    first = next(meta.frames, None)  # its size, to check --masks and --points before the model loads
    if first is None:
        raise UsageError(f"--video {args.video}", "no frames")
    size = first.shape[:2]
    masks = parse_masks(args.masks, size, meta.num_frames) if args.masks is not None else None
    points = parse_points(args.points, size, meta.num_frames) if args.points is not None else None
    run = _run_record(args, overrides)
    if not _prepare_video_output(args, run):
        print(f"{args.output_dir}: this run has finished already (--resume): nothing to do", file=sys.stderr)
        return

    from tarvis_fast.inference.predictor import VideoPredictor
    from tarvis_fast.inference.video import write_video_outputs
    from tarvis_fast.model.build import load_model

    check_device_available("--device", args.device)
    model = load_model(args.checkpoint, config=cfg, trusted=args.trust_checkpoint)
    predictor = VideoPredictor(model, cfg, device=args.device, amp=args.amp, compile=args.compile, progress=True)
    results = predictor.segment(args.video, task, masks=masks, points=points, vocabulary=args.vocabulary,
                                clip_length=args.clip_length, frame_overlap=args.frame_overlap, min_dim=args.min_dim,
                                disable_resize=args.disable_resize, consistent_final_clip=args.final_clip != "original",
                                reuse_points_on_overlap=args.overlap_points == "original")
    names = vocabulary(args.vocabulary).names if args.vocabulary else ()
    predictor.runner.stats.add("write", write_video_outputs(
        args.output_dir, results, meta.names, meta.fps or DEFAULT_FPS, source=str(args.video), task=args.task,
        vocabulary=args.vocabulary, class_names=names))
    write_run_record(args.output_dir, run, complete=True)
    print(predictor.runner.stats.summary(), file=sys.stderr)


# What a run record holds: every flag that changes the written files (the device and --compile only change how
# fast they are written; --amp changes the numbers).
RESULT_FLAGS = ("video", "task", "masks", "points", "vocabulary", "amp", "clip_length", "frame_overlap", "min_dim",
                "disable_resize", "final_clip", "overlap_points")


def _run_record(args: argparse.Namespace, overrides: Sequence[str]) -> dict[str, Any]:
    run = {flag: getattr(args, flag) for flag in RESULT_FLAGS}
    run["video"] = str(args.video.resolve())
    run["checkpoint"] = str(args.checkpoint.resolve())
    run["cfg_overrides"] = list(overrides)
    return run


def _prepare_video_output(args: argparse.Namespace, run: dict[str, Any]) -> bool:
    """Make `args.output_dir` ready for `run`: refuse a folder holding another run's results unless --overwrite,
    which deletes them; with --resume, accept only the same run's, and restart it (from the video's first frame,
    so that its files equal an uninterrupted run's) unless it had finished. Returns whether there is work to do.
    The run record is written, marked unfinished, before any result."""
    flag = f"--output_dir {args.output_dir}"
    found = video_output_files(args.output_dir) if args.output_dir.is_dir() else []
    record = read_run_record(args.output_dir) if found and not args.overwrite else None
    if found and not args.overwrite:
        if record is None:
            raise UsageError(flag, "holds results without a run record (run.json); give --overwrite to replace them")
        previous, complete = record
        if not args.resume:
            hint = "--resume to finish it or " if not complete and previous == run else ""
            raise UsageError(flag, f"holds the results of {'a finished' if complete else 'an unfinished'} run of "
                                   f"{previous.get('video')}; give {hint}--overwrite to replace them")
        if previous != run:
            raise UsageError(f"--resume {args.output_dir}", f"holds a run with other flags or inputs (differing: "
                                                            f"{', '.join(differing_keys(run, previous))}); give "
                                                            "--overwrite instead")
        if complete:
            return False
    clear_video_outputs(args.output_dir)  # --overwrite, or an unfinished run restarted: nothing of it may remain
    write_run_record(args.output_dir, run, complete=False)
    return True


def parse_masks(spec: str, size: tuple[int, int], num_frames: int | None = None) -> dict[int, np.ndarray]:
    """--masks: "first.png" (frame 0) or "0:a.png,30:b.png" -> {frame: (H, W) id map}. 255 is void: it stays in
    the map, and `VideoPredictor` ignores it as the DAVIS reader does."""
    items = spec.split(",")
    masks: dict[int, np.ndarray] = {}
    for item in items:
        match = re.fullmatch(r"(\d+):(.+)", item.strip())
        if match is None and len(items) > 1:
            raise UsageError("--masks", f"{item!r} is not 'frame:path' (several masks need a frame index each)")
        frame, path = (int(match[1]), Path(match[2])) if match else (0, Path(item.strip()))
        if frame in masks:
            raise UsageError("--masks", f"frame {frame} is given twice")
        _check_frame_index("--masks", str(path), frame, num_frames)
        try:
            labels = read_label_png(path, shape=size)
        except (ValueError, OSError) as err:
            raise UsageError("--masks", str(err)) from None
        if not ((labels != 0) & (labels != VOID_ID)).any():
            raise UsageError(f"--masks {path}", "holds no object (every pixel is 0, background, or 255, void)")
        masks[frame] = labels
    return masks


def parse_points(spec: str, size: tuple[int, int],
                 num_frames: int | None = None) -> dict[int, tuple[int, tuple[float, float]]]:
    """--points: "x,y;x,y" (objects 1, 2, ... on frame 0) or a JSON file -> {object id: (frame, (x, y))}, each
    point inside the (H, W) `size` of the frames and on one of `num_frames` frames where that is known."""
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        points = _points_from_json(path)
    else:
        points = {}
        for object_id, item in enumerate(spec.split(";"), 1):
            try:
                x, y = (float(v) for v in item.split(","))
            except ValueError:
                raise UsageError("--points", f"{item!r} is not an 'x,y' pair (give \"x,y;x,y\" or a JSON file)"
                                 ) from None
            points[object_id] = (0, (x, y))
    height, width = size
    for object_id, (frame, (x, y)) in points.items():
        _check_frame_index("--points", f"object {object_id}", frame, num_frames)
        if not (0 <= x < width and 0 <= y < height):
            raise UsageError("--points", f"object {object_id}: (x, y) = ({x:g}, {y:g}) lies outside the frame, "
                                         f"whose pixels are x 0..{width - 1}, y 0..{height - 1}")
    return points


def _check_frame_index(flag: str, what: str, frame: int, num_frames: int | None) -> None:
    if frame < 0 or (num_frames is not None and frame >= num_frames):
        frames = f"0..{num_frames - 1}" if num_frames is not None else "0 and up"
        raise UsageError(flag, f"{what}: frame {frame} is not in the video (frames {frames})")


def _points_from_json(path: Path) -> dict[int, tuple[int, tuple[float, float]]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--points {path}", "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--points {path}", f"not valid JSON ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"--points {path}", 'expected a list like [{"id": 1, "frame": 0, "x": 120, "y": 80}]')
    points = {}
    where = f"--points {path}"
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"x", "y"} <= set(entry) or set(entry) - {"id", "frame", "x", "y"}:
            raise UsageError(where, f'entry {index}: expected {{"id", "frame", "x", "y"}} ("id" and "frame" optional), '
                                    f"got {entry}")
        try:
            object_id, frame = int(entry.get("id", index + 1)), int(entry.get("frame", 0))
            point = (float(entry["x"]), float(entry["y"]))
        except (TypeError, ValueError):
            raise UsageError(where, f"entry {index}: id and frame must be integers, x and y numbers, got {entry}"
                             ) from None
        if object_id < 1:
            raise UsageError(where, f"entry {index}: object ids must be >= 1 (0 is background), got {object_id}")
        if object_id in points:
            raise UsageError(where, f"entry {index}: object {object_id} is given twice")
        points[object_id] = (frame, point)
    return points


if __name__ == "__main__":
    sys.exit(main())
