"""Look at training clips before training: `python -m tarvis_fast.data.preview --cfg CFG --dataset NAME --samples N
--out DIR [--seed S]` writes, per sampled clip, `sample_XXXX.png` (its frames side by side, targets overlaid: masks,
ids, class names, PET points, ignore regions hatched) and `sample_XXXX.json`:

    {"dataset", "task", "source" (video id), "frames" (source frame indices), "flipped", "size": [H, W],
     "targets": [{"class": the dataset's category id (null for VOS/PET), "name", "masks": [COCO RLE per frame],
                  "point": [y, x] normalised (objects given by their point only)}]}

Clips are drawn as training draws them (task, object count, augmentation, and for VOS each object given by its point
with the PET likelihood, these being the last objects), from a generator seeded by (S, index).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tarvis_fast.cli_errors import add_debug_flag, run_cli
from tarvis_fast.config import load_config, split_overrides
from tarvis_fast.data.clips import ClipSource
from tarvis_fast.data.loader import BatchPlan, draw_point_flags
from tarvis_fast.data.sample import ClipSample
from tarvis_fast.data.sources import build_source
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.davis import DAVIS_PALETTE
from tarvis_fast.formats.rle import encode_rle
from tarvis_fast.tasks import Task

_ALPHA = 0.5
_HATCH_STEP = 8
_GAP = 4  # pixels between frames in the strip


def draw_sample(source: ClipSource, rng: np.random.Generator, pet_likelihood: float) -> tuple[ClipSample, int]:
    """One clip as training would draw it from `source`, and how many of its objects (the last ones) are given by
    their points: for VOS, a random object count and point objects by the loader's rule (`BatchPlan`)."""
    if not source.task.guided_by_objects:
        return source.sample(rng, source.task), 0
    plan = BatchPlan(source.name, Task.VOS, int(rng.choice(source.object_counts())),
                     draw_point_flags(rng, pet_likelihood))
    sample = source.sample(rng, plan.sample_task, plan.num_objects)
    return sample, plan.num_point_objects(sample.num_objects)


def _label(sample: ClipSample, source: ClipSource, index: int) -> tuple[int | None, str | None]:
    """(the dataset's category id, its name) of target `index`; (None, None) for VOS/PET objects."""
    if sample.classes is None:
        return None, None
    category = sample.meta["category_ids"][index]
    return category, source.category_names.get(category, str(category))


def _caption(sample: ClipSample, source: ClipSource, index: int) -> str:
    name = _label(sample, source, index)[1]
    return f"#{sample.meta['instance_ids'][index]}" + (f" {name}" if name else "")


def render(sample: ClipSample, captions: Sequence[str], num_points: int = 0) -> np.ndarray:
    """(H, T * (W + gap), 3) uint8 BGR strip of the clip's frames with its targets drawn on, and on frame 0 the
    points of its last `num_points` objects."""
    frames = sample.images.permute(0, 2, 3, 1).numpy()[..., ::-1].astype(np.float32)  # (T, H, W, 3) BGR
    masks = sample.masks.numpy()
    colours = DAVIS_PALETTE[1:][:, ::-1].astype(np.float32)  # object i: the DAVIS colour of id i + 1, in BGR
    for i, object_masks in enumerate(masks):
        frames[object_masks] = (1 - _ALPHA) * frames[object_masks] + _ALPHA * colours[i % len(colours)]
    out = np.ascontiguousarray(frames.clip(0, 255).astype(np.uint8))
    h, w = out.shape[1:3]
    if sample.ignore is not None:
        yy, xx = np.mgrid[0:h, 0:w]
        hatch = (yy + xx) % _HATCH_STEP < 2
        out[sample.ignore.numpy() & hatch] = (255, 255, 255)
    for t, frame in enumerate(out):
        for i, caption in enumerate(captions):
            if masks[i, t].any():
                rows, cols = np.nonzero(masks[i, t])
                origin = (int(cols.mean()), int(rows.mean()))
                cv2.putText(frame, caption, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        if num_points and t == 0:
            for y, x in sample.points[sample.num_objects - num_points:].tolist():
                cv2.circle(frame, (int(x * w), int(y * h)), 5, (0, 255, 255), -1)
                cv2.circle(frame, (int(x * w), int(y * h)), 5, (0, 0, 0), 1)
    gap = np.zeros((h, _GAP, 3), np.uint8)
    return np.concatenate([part for frame in out for part in (frame, gap)][:-1], axis=1)


def describe(sample: ClipSample, source: ClipSource, num_points: int = 0) -> dict[str, Any]:
    """The sample's json (see the module docstring); its last `num_points` objects are given by their points."""
    targets = []
    first_point = sample.num_objects - num_points
    for i, object_masks in enumerate(sample.masks.numpy()):
        category, name = _label(sample, source, i)
        target: dict[str, Any] = {"class": category, "name": name, "masks": [encode_rle(m) for m in object_masks]}
        if i >= first_point:
            target["point"] = sample.points[i].tolist()
        targets.append(target)
    meta = sample.meta
    task = sample.task
    if task.guided_by_objects:  # as a training batch names it: PET when every object is given by its point
        task = Task.PET if num_points == sample.num_objects else Task.VOS
    return {"dataset": sample.dataset, "task": task.short_name, "source": meta["source"],
            "frames": list(meta["frames"]), "flipped": bool(meta["flipped"]), "size": list(meta["size"]),
            "targets": targets}


def write_previews(source: ClipSource, out: Path, samples: int, seed: int, pet_likelihood: float) -> list[Path]:
    """Write `samples` previews of `source` into `out`; returns the json paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(samples):
        sample, num_points = draw_sample(source, np.random.default_rng([seed, index]), pet_likelihood)
        captions = [_caption(sample, source, i) for i in range(sample.num_objects)]
        ok, png = cv2.imencode(".png", render(sample, captions, num_points))
        if not ok:
            raise RuntimeError(f"{out}: PNG encoding of sample {index} failed")
        with atomic_open(out / f"sample_{index:04d}.png", "wb") as handle:
            handle.write(png.tobytes())
        path = out / f"sample_{index:04d}.json"
        with atomic_open(path, "w") as handle:
            json.dump(describe(sample, source, num_points), handle)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write previews of a training dataset's clips."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tarvis_fast.data.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="training config (YAML)")
    parser.add_argument("--dataset", required=True, help="a dataset named under `datasets:` in the config")
    parser.add_argument("--samples", type=int, default=8, help="clips to write (default 8)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips (default 0)")
    add_debug_flag(parser)
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    cfg = load_config(args.cfg, overrides)
    if args.dataset not in cfg.datasets:
        parser.error(f"--dataset {args.dataset}: not in the config's datasets ({', '.join(cfg.datasets)})")
    source = build_source(args.dataset, cfg)
    write_previews(source, args.out, args.samples, args.seed, cfg.training.point_vos_task_sample_likelihood)
    print(f"{args.samples} previews of {args.dataset} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
