"""CPU benchmark of whole inference runs against the model alone (issue 17).

    pytest bench/test_bench_pipeline.py --benchmark-enable --benchmark-only

The two runs of `pipeline_split.py` (its docstring says what they are), smaller: the own video is 18 frames of the
DAVIS clip horsejump-high (2 clips), the DAVIS benchmark its 50 frames (8 clips), the network at min_dim 128
(frames decoded and written at 854x480). Group "pipeline cpu <run>" holds the whole run and the model alone: the
run's forwards on the same inputs, recorded in a warm-up run and replayed, so their ratio is what the pipeline
around the model costs. Each whole-run row's extra_info has the busy seconds of each stage of its last round
(`RunStats.stage_seconds`: decode and write run in background threads), and both rows the system share of the
CPU time and the minor page faults per round. For the split at the benchmarks' sizes run `pipeline_split.py`.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_split import SEQUENCE, SHARED_DATA, Recorder, build, davis_run, video_run

from tarvis_fast.inference.runner import RunStats

MIN_DIM = 128
VIDEO_FRAMES = 18


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Callable[[], RunStats], Recorder]]:
    """Per run: the function that runs it, and the recorder of its forwards (recorded once)."""
    if not (SHARED_DATA / "davis" / "JPEGImages" / SEQUENCE).is_dir():
        pytest.skip(f"the DAVIS clip is not under {SHARED_DATA / 'davis'} (set TARVIS_SHARED_DATA)")
    model, cfg = build("ResNet50")
    base = tmp_path_factory.mktemp("bench_pipeline")
    made = {"video": video_run(model, cfg, base, VIDEO_FRAMES, MIN_DIM), "davis": davis_run(model, cfg, base, MIN_DIM)}
    recorded = {}
    for name, run in made.items():
        recorder = Recorder(model)
        run()
        recorder.stop()
        recorded[name] = (run, recorder)
    return recorded


def measured(benchmark, work: Callable[[], object]) -> object:
    """Run `work` under the benchmark (2 rounds) and note its system share and minor faults per round."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = benchmark.pedantic(work, rounds=2, iterations=1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    rounds = benchmark.stats.stats.rounds if benchmark.stats else 1  # None with --benchmark-disable
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    benchmark.extra_info["system_share"] = system / (user + system) if user + system else 0.0
    benchmark.extra_info["minor_faults_per_round"] = (after.ru_minflt - before.ru_minflt) / rounds
    return result


@pytest.mark.parametrize("name", ["video", "davis"])
def test_model_alone(benchmark, runs, name: str) -> None:
    benchmark.group = f"pipeline cpu {name}"
    _, recorder = runs[name]
    measured(benchmark, recorder.replay)
    assert recorder.calls


@pytest.mark.parametrize("name", ["video", "davis"])
def test_whole_run(benchmark, runs, name: str) -> None:
    benchmark.group = f"pipeline cpu {name}"
    run, recorder = runs[name]
    stats = measured(benchmark, run)
    benchmark.extra_info["busy_seconds"] = stats.stage_seconds
    assert stats.clips == len(recorder.calls)
