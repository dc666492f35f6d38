"""The demo end to end (`python -m tarvis_fast.demo --quick`): every task's results are files in the official
formats that the project's readers take back, every metric is computed for both models, and the report is written.
Accuracy is not asserted: three iterations on tiny videos learn nothing (the full run's numbers are in the README).
"""
from __future__ import annotations

import html
import json
import math

import cv2
import numpy as np
import pytest

from tarvis_fast.datasets import DATASETS
from tarvis_fast.demo import report
from tarvis_fast.demo.cli import MARKER, main
from tarvis_fast.formats import burst, davis, panoptic, ytvis


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["--out", str(out), "--quick", "--seed", "3"]) == 0
    return out


@pytest.mark.slow
def test_every_task_writes_its_official_format_and_every_metric_is_computed(demo):
    val = demo / "demo_data"
    for model in ("trained", "untrained"):
        results = demo / "results" / model
        gt = ytvis.read_ground_truth(val / "vis" / "val" / "val.json")
        tracks = ytvis.read_results(results / "vis" / "results.json", gt.videos, gt.category_ids)
        assert all(track.category_id in gt.category_ids for track in tracks)

        vps_gt = panoptic.read_vipseg_gt(val / "vps" / "val")
        assert [v.name for v in panoptic.read_vipseg_predictions(results / "vps", vps_gt)] == \
            [v.name for v in vps_gt.videos]

        for sequence in davis.read_split(val / "vos" / "val", "val"):
            names, truth = davis.read_annotations(val / "vos" / "val", sequence)
            labels = davis.read_results(results / "vos", sequence, names, shape=truth.shape[1:],
                                        max_id=int(truth.max()))
            assert labels.shape == truth.shape

        header, sequences = burst.read_burst_annotations(results / "pet" / "results.json")
        assert [s.seq_name for s in sequences] == \
            [s.seq_name for s in burst.read_burst_annotations(val / "pet" / "val" / "first_frame_annotations.json")[1]]

        eval_files = {task: results / task / "eval.json" for task in ("vis", "vps", "vos", "pet")}
        scores = report.scores(eval_files)
        assert set(scores) == {m.label for m in report.METRICS}
        assert all(math.isfinite(value) and 0 <= value <= 100 for value in scores.values()), scores

    summary = json.loads((demo / "report" / "results.json").read_text())
    assert set(summary["scores"]) == {"trained", "untrained"}
    page = (demo / "report" / "index.html").read_text()
    assert all(html.escape(m.label) in page for m in report.METRICS) and "loss.png" in page
    assert (demo / "report" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for task in ("vis", "vps", "vos", "pet"):
        assert (demo / "report" / "overlays" / f"{task}.webm").stat().st_size > 0, task
        assert f"overlays/{task}.webm" in page
    # the overview: a row per task of 4 frames, each 3x the demo's frame (the README's picture)
    overview = cv2.imread(str(demo / "report" / "overview.png"))
    frame_h, frame_w = cv2.VideoCapture(str(demo / "report" / "overlays" / "vos.webm")).read()[1].shape[:2]
    assert overview.shape[:2] == (4 * (3 * frame_h + 4) - 4, 150 + 4 * (3 * frame_w + 4)) and "overview.png" in page


@pytest.mark.slow
def test_the_untrained_checkpoint_is_the_same_model_before_training_and_the_losses_are_logged(demo):
    import torch

    untrained = torch.load(demo / "untrained" / "000000.pth", weights_only=True)["model"]
    trained = torch.load(demo / "run" / "000003.pth", weights_only=True)["model"]
    assert untrained.keys() == trained.keys()
    changed = [key for key in trained if not torch.equal(trained[key], untrained[key])]
    assert changed and len(changed) < len(trained)  # trained from these weights: frozen-BN buffers stay equal
    curves = report.read_losses(demo / "run" / "logs" / "out.log")
    assert [i for i, _ in curves["TotalL"]] == [1, 2, 3]


def test_a_folder_that_is_not_a_demos_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--out", str(tmp_path), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {tmp_path}: is not empty and not a demo's folder") and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_demo_folder_of_another_profile_or_seed_is_refused(tmp_path, capsys):
    (tmp_path / MARKER).write_text(json.dumps({"profile": "full", "seed": 0}))
    assert main(["--out", str(tmp_path), "--quick"]) == 2
    assert "holds a demo run made otherwise" in capsys.readouterr().err


def test_the_demo_rows_read_their_inputs_under_the_workspace():
    for name in ("DEMO_VIS", "DEMO_VPS", "DEMO_VOS", "DEMO_PET"):
        inputs = DATASETS[name].benchmark.inputs("val")
        assert all(path.startswith("demo_data/") for path in inputs.values()), name


def test_loss_curves_read_a_resumed_log_and_plot(tmp_path):
    log = tmp_path / "out.log"
    log.write_text("[t] it 1/4  TotalL 30.0  VSegDiceL 0.9  lr 1e-4  grad_norm 1\n"
                   "[t] it 2/4  TotalL 20.0  lr 1e-4  grad_norm 1\n"
                   "[t] continuing\n[t] it 2/4  TotalL 25.0  lr 1e-4  grad_norm 1\n")
    curves = report.read_losses(log)
    assert curves == {"TotalL": [(1, 30.0), (2, 25.0)], "VSegDiceL": [(1, 0.9)]}
    path = report.plot_losses(curves, tmp_path / "loss.png")
    from PIL import Image

    assert np.asarray(Image.open(path)).shape == (420, 760, 3)


@pytest.mark.slow
def test_a_rerun_reuses_the_data_and_skips_finished_training(demo, capsys):
    from tarvis_fast.demo.cli import CONFIG_NAME, PROFILES, RUN, _train
    from tarvis_fast.demo.data import DONE_FILE, write_demo_data

    done = demo / "demo_data" / "vos" / "val" / DONE_FILE
    before = done.stat().st_mtime_ns
    messages: list[str] = []
    write_demo_data(demo, PROFILES["quick"].data, seed=3, progress=messages.append)
    assert messages == [] and done.stat().st_mtime_ns == before
    assert _train(demo / CONFIG_NAME, demo / RUN, 3, 3, "cpu") == demo / RUN / "000003.pth"
    assert "exists, skipped" in capsys.readouterr().out
