"""The demo's train and val sets: procedural videos (`data.synthetic`) written in each demo benchmark's real layout
under `<workspace>/demo_data/<task>/<split>/`, where the DEMO_* rows of `tarvis_fast.datasets` expect them.

    sets = write_demo_data(workspace, DataSizes(...), seed=0)   # reuses a set that is already complete

Each (task, split) is written from its own seed, derived from the demo's seed, and is marked complete by a
`done.json` holding the sizes and seed it was made with; a set without it (an interrupted run) or made with other
sizes is written again.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tarvis_fast.data.synthetic import SyntheticVideo, generate_videos, write_burst, write_davis, write_vipseg, write_ytvis
from tarvis_fast.datasets import DEMO_DATA
from tarvis_fast.formats.atomic import atomic_open

DONE_FILE = "done.json"
TASKS = ("vis", "vps", "vos", "pet")
SPLITS = ("train", "val")
# The writer of each task's layout. DAVIS counts a sequence's objects in its first frame, so VOS videos start with
# every object in view; the other tasks' objects may enter later (BURST points each at its first appearance).
_WRITERS: dict[str, Callable[[Path, Sequence[SyntheticVideo], str], Path]] = {
    "vis": write_ytvis, "vps": write_vipseg, "vos": write_davis, "pet": write_burst}


@dataclass(frozen=True)
class DataSizes:
    """How much data the demo generates, per task."""

    train_videos: int
    val_videos: int
    frames: int                     # per video
    size: tuple[int, int]           # (H, W)
    objects: tuple[int, int] = (1, 3)


def set_folder(workspace: Path, task: str, split: str) -> Path:
    return workspace / DEMO_DATA / task / split


def _seed(seed: int, task: str, split: str) -> int:
    return int(np.random.SeedSequence([seed, TASKS.index(task), SPLITS.index(split)]).generate_state(1)[0])


def write_demo_data(workspace: Path, sizes: DataSizes, seed: int,
                    progress: Callable[[str], None] = print) -> None:
    """Every (task, split) set under `workspace`, each written only when it is missing or was made otherwise."""
    for task in TASKS:
        for split in SPLITS:
            folder = set_folder(workspace, task, split)
            record = {"sizes": asdict(sizes), "seed": seed}
            done = folder / DONE_FILE
            if done.is_file() and json.loads(done.read_text()) == json.loads(json.dumps(record)):
                continue
            if folder.exists():  # a partial set, or one of other sizes: the demo's own files, rewritten whole
                shutil.rmtree(folder)
            count = sizes.train_videos if split == "train" else sizes.val_videos
            progress(f"generating {task} {split}: {count} videos of {sizes.frames} frames, {sizes.size[0]}x{sizes.size[1]}")
            videos = generate_videos(_seed(seed, task, split), count, sizes.frames, sizes.size, prefix=f"{task}_{split}",
                                     num_objects=sizes.objects, visible_at_start=task == "vos")
            _WRITERS[task](folder, videos, split)
            with atomic_open(done, "w") as handle:
                json.dump(record, handle)
