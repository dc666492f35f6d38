"""HOTA, DetA, AssA and AP for BURST point-exemplar-guided tracking (EVAL.md §5), through the `trackeval` package.

trackeval 1.3.0 carries the BURST dataset class and the TAO category list (`tao_categories.json`) of the official
evaluator (Ali2500/BURST-benchmark `burstapi/eval/run.py`) and its HOTA and TrackMAP metrics. What the official script
adds is reproduced here: the dataset is built in class-guided mode and switched to exemplar-guided mode afterwards (so
predicted tracks keep the categories their file gives them and no unmatched detection is dropped), sequences are
evaluated one by one and combined per class, and classes are averaged into All / Common / Uncommon, x100.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from trackeval.datasets import BURST
from trackeval.metrics import HOTA, TrackMAP

from tarvis_fast.evaluation.parallel import parallel_map
from tarvis_fast.formats import burst as burst_format

GT_FILE = "all_classes.json"

# The 78 "common" BURST categories (LVIS ids): the `known_list` of `print_results` in burstapi/eval/run.py
# (Ali2500/BURST-benchmark, commit c1431986). Every other category with ground truth counts as "uncommon".
COMMON_CATEGORY_IDS = frozenset({
    4, 13, 1038, 544, 1057, 34, 35, 36, 41, 45, 58, 60, 579, 1091, 1097, 1099, 78, 79, 81, 91, 1115, 1117, 95, 1122,
    99, 1132, 621, 1135, 625, 118, 1144, 126, 642, 1155, 133, 1162, 139, 154, 174, 185, 699, 1215, 714, 717, 1229,
    211, 729, 221, 229, 747, 235, 237, 779, 276, 805, 299, 829, 852, 347, 371, 382, 896, 392, 926, 937, 428, 429, 961,
    452, 979, 980, 982, 475, 480, 993, 1001, 502, 1018,
})

_TRACKER = "prediction"
# CPU seconds per annotated frame and class of a sequence (trackeval preprocesses and scores each sequence once
# per class), for choosing between one process and a pool (parallel.py): 3.2 ms per sequence of 5 annotated
# frames with 5 classes in a synthetic set of 40 sequences, on a busy 2-core machine.
SECONDS_PER_FRAME_AND_CLASS = 1.3e-4


def _metrics() -> tuple[HOTA, TrackMAP]:
    return HOTA({"PRINT_CONFIG": False}), TrackMAP({"PRINT_CONFIG": False})


def _build_dataset(pred_file: Path, gt_file: Path) -> BURST:
    """trackeval's BURST dataset over one results file. trackeval reads a folder holding exactly one ground-truth JSON
    and `<trackers>/<name>/data/` holding exactly one results JSON, so both are linked into such a layout."""
    with tempfile.TemporaryDirectory(prefix="tarvis_burst_") as scratch:
        gt_dir, tracker_dir = Path(scratch) / "gt", Path(scratch) / "trackers" / _TRACKER / "data"
        gt_dir.mkdir()
        tracker_dir.mkdir(parents=True)
        os.symlink(gt_file.resolve(), gt_dir / GT_FILE)
        os.symlink(pred_file.resolve(), tracker_dir / "results.json")
        config = BURST.get_default_dataset_config()
        config.update({"GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(Path(scratch) / "trackers"),
                       "TRACKERS_TO_EVAL": [_TRACKER], "PRINT_CONFIG": False, "EXEMPLAR_GUIDED": False})
        dataset = BURST(config)
    # As burstapi/eval/run.py: exemplar-guided mode only from here on, i.e. for the per-sequence preprocessing.
    dataset.config["EXEMPLAR_GUIDED"] = True
    return dataset


def _evaluate_sequences(job: tuple[BURST, Sequence[str], Sequence[str]]) -> dict[str, dict]:
    """{sequence: {class: {metric name: per-sequence result}}} for a chunk of sequences."""
    dataset, sequences, classes = job
    hota, track_map = _metrics()
    results = {}
    for seq in sequences:
        raw = dataset.get_raw_seq_data(_TRACKER, seq)
        results[seq] = {}
        for cls in classes:
            data = dataset.get_preprocessed_seq_data(raw, cls)
            results[seq][cls] = {"HOTA": hota.eval_sequence(data), "TrackMAP": track_map.eval_sequence(data)}
    return results


def _split_mean(values: list[float]) -> float | None:
    """Mean over a split's classes, x100; None for a split without classes (the official script divides by 0)."""
    return 100 * sum(values) / len(values) if values else None


def evaluate_burst(pred: Path, gt: Path, *, workers: int = 1) -> dict:
    """BURST point-exemplar-guided metrics of a results JSON `pred` against `gt` (the annotation folder holding
    `all_classes.json`, or that file). Returns {"HOTA" | "DetA" | "AssA" | "AP": {"all", "common", "uncommon"}}, as
    the official script's `--output` JSON."""
    pred, gt = Path(pred), Path(gt)
    gt_file = gt / GT_FILE if gt.is_dir() else gt
    gt_content, gt_sequences = burst_format.read_burst_annotations(gt_file)
    burst_format.check_burst_results(pred, gt_sequences, gt_content.get("split"))
    dataset = _build_dataset(pred, gt_file)
    _, sequences, classes = dataset.get_eval_info()
    sequences = sorted(sequences)
    chunks = [sequences[i::workers] for i in range(min(workers, len(sequences)))]
    frames_per_sequence = sum(len(s.annotated_image_paths) for s in gt_sequences) / max(len(gt_sequences), 1)
    per_sequence: dict[str, dict] = {}
    for chunk_result in parallel_map(
            _evaluate_sequences, [(dataset, c, classes) for c in chunks], workers,
            seconds=lambda job: len(job[1]) * frames_per_sequence * len(classes) * SECONDS_PER_FRAME_AND_CLASS):
        per_sequence |= chunk_result

    hota, track_map = _metrics()
    per_class = {}
    for cls in classes:
        per_class[cls] = {
            "HOTA": hota.combine_sequences({s: per_sequence[s][cls]["HOTA"] for s in sequences}),
            "TrackMAP": track_map.combine_sequences({s: per_sequence[s][cls]["TrackMAP"] for s in sequences}),
        }
    class_ids = {c["name"]: c["id"] for c in dataset.gt_data["categories"]}
    splits = {"all": list(classes),
              "common": [c for c in classes if class_ids[c] in COMMON_CATEGORY_IDS],
              "uncommon": [c for c in classes if class_ids[c] not in COMMON_CATEGORY_IDS]}
    result: dict[str, dict] = {}
    for row in ("HOTA", "DetA", "AssA"):
        result[row] = {name: _split_mean([float(np.mean(per_class[c]["HOTA"][row])) for c in members])
                       for name, members in splits.items()}
    result["AP"] = {name: _split_mean([float(np.mean(per_class[c]["TrackMAP"]["AP_all"])) for c in members])
                    for name, members in splits.items()}
    return result
