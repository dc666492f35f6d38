"""CPU benchmark of the DAVIS-2017 J&F metric on the real 50-frame clip horsejump-high (854x480, 2 objects).

    pytest bench/test_bench_davis.py --benchmark-enable --benchmark-only

Ground truth: the OSVOS masks; results: the same masks moved 5 pixels right. Rows: `evaluate_davis` (each label map
scanned once per frame for all objects: areas and one label boundary split among the ids; boundary matching by
sorted-key search over all frames) and a straightforward per-frame loop in the official toolkit's manner (per frame
and object: masks, IoU, boundary maps, two cv2.dilate with a disk). Both read the PNGs and give the same numbers
(checked before timing). The whole command line against the official toolkit's: bench/davis_vs_official.py.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tarvis_fast.evaluation.davis import STATISTICS, boundary_map, boundary_radius, evaluate_davis, object_statistics
from tarvis_fast.formats.davis import read_label_png, write_results

SEQUENCE = "horsejump-high"
SHARED_DATA = Path(os.environ.get("TARVIS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def davis_case(tmp_path_factory) -> tuple[Path, Path]:
    """(results folder, DAVIS root) in a temporary folder."""
    clip = SHARED_DATA / "davis"
    if not (clip / "osvos" / SEQUENCE).is_dir():
        pytest.skip(f"real DAVIS clip not found under {clip} (set TARVIS_SHARED_DATA)")
    base = tmp_path_factory.mktemp("bench_davis")
    root = base / "davis"
    for folder, source in (("JPEGImages", clip / "JPEGImages" / SEQUENCE), ("Annotations", clip / "osvos" / SEQUENCE)):
        (root / folder / "480p").mkdir(parents=True)
        (root / folder / "480p" / SEQUENCE).symlink_to(source)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(SEQUENCE + "\n")
    names = sorted(p.stem for p in (clip / "osvos" / SEQUENCE).glob("*.png"))
    moved = np.stack([np.roll(read_label_png(clip / "osvos" / SEQUENCE / f"{n}.png"), 5, axis=1) for n in names])
    write_results(base / "results", SEQUENCE, names, moved)
    return base / "results", root


def per_frame_loop(results: Path, root: Path) -> dict[str, float]:
    """J&F the straightforward way: one frame and one object at a time."""
    gt_paths = sorted((root / "Annotations" / "480p" / SEQUENCE).glob("*.png"))
    first = read_label_png(gt_paths[0])
    n_objects = int(first[first != 255].max())
    radius = boundary_radius(*first.shape)
    offsets = np.arange(-radius, radius + 1)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)
    jaccard = np.zeros((n_objects, len(gt_paths) - 2))
    boundary_f = np.zeros_like(jaccard)
    for t, gt_path in enumerate(gt_paths[1:-1]):
        gt = read_label_png(gt_path)
        pred = read_label_png(results / SEQUENCE / gt_path.name)
        for k in range(1, n_objects + 1):
            gt_mask, pred_mask = gt == k, pred == k
            union = np.sum(gt_mask | pred_mask)
            jaccard[k - 1, t] = np.sum(gt_mask & pred_mask) / union if union else 1.0
            gt_edges, pred_edges = boundary_map(gt_mask), boundary_map(pred_mask)
            n_gt, n_pred = gt_edges.sum(), pred_edges.sum()
            gt_near = cv2.dilate(gt_edges.astype(np.uint8), disk).astype(bool)
            pred_near = cv2.dilate(pred_edges.astype(np.uint8), disk).astype(bool)
            precision = np.sum(pred_edges & gt_near) / n_pred if n_pred else 1.0
            recall = np.sum(gt_edges & pred_near) / n_gt if n_gt else 1.0
            boundary_f[k - 1, t] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    j = np.mean([object_statistics(x) for x in jaccard], axis=0)
    f = np.mean([object_statistics(x) for x in boundary_f], axis=0)
    return dict(zip(STATISTICS, ((j[0] + f[0]) / 2, *j, *f)))


@pytest.mark.benchmark(group="davis J&F, 50 frames 854x480, 2 objects")
def test_evaluate_davis(benchmark, davis_case) -> None:
    results, root = davis_case
    expected = per_frame_loop(results, root)
    stats = benchmark(lambda: evaluate_davis(results, root, workers=1))
    for name in STATISTICS:
        assert math.isclose(stats[name], expected[name], abs_tol=1e-12), name


@pytest.mark.benchmark(group="davis J&F, 50 frames 854x480, 2 objects")
def test_per_frame_loop(benchmark, davis_case) -> None:
    results, root = davis_case
    stats = benchmark(lambda: per_frame_loop(results, root))
    assert 0.0 < stats["J&F-Mean"] < 1.0
