"""`--compile` as `infer.py` runs it: Inductor on the network's blocks (`tarvis_fast.model.compile`), through the
clip runner, against the eager network, over videos of two padded sizes and clips of two lengths."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch._inductor.config
from torch._dynamo.utils import counters

from tarvis_fast.inference.clips import ImagesResizer
from tarvis_fast.inference.runner import ClipRunner, ClipSettings, VisRequest

from helpers.tiny import tiny_model


def _video(height: int, width: int, frames: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(height * 1000 + width)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]


@pytest.mark.slow
def test_inductor_matches_eager_and_recompiles_only_for_new_buckets(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold, and out of the user's cache
    # Trust the CPU's flags for the vector ISA rather than have Inductor prove it by building and loading a probe
    # library per ISA in the empty cache: that took 15-60 s of this test on a busy 2-core machine, and which ISA
    # the kernels use is not what is tested here.
    monkeypatch.setattr(torch._inductor.config.cpp, "vec_isa_ok", True)
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(kernel_backend="torch").eval()
    compiled = ClipRunner(copy.deepcopy(model), device="cpu", compile=True)  # what infer.py --compile builds
    eager = ClipRunner(model, device="cpu")
    settings = ClipSettings(clip_length=3, frame_overlap=1, resizer=ImagesResizer("none"))  # clips of 3, 2 frames
    task = VisRequest("YOUTUBE_VIS", tracks_per_video=3)

    graphs = []
    for size in ((64, 128), (60, 100), (128, 128)):  # 60x100 pads to 64x128, the first video's bucket
        got = list(compiled.run(_video(*size), 5, size, task, settings))
        want = list(eager.run(_video(*size), 5, size, task, settings))
        assert [(t.category_id, t.segmentations) for t in got] == [(t.category_id, t.segmentations) for t in want]
        assert [t.score for t in got] == pytest.approx([t.score for t in want], rel=1e-4, abs=1e-5)
        graphs.append(counters["stats"]["unique_graphs"])

    first, same_bucket, new_bucket = graphs
    # One graph per compiled block type (on a CPU: the neck's window attention layer, the decoder's 3 blocks) for
    # clips of 3 and then 2 frames.
    assert first == 4
    assert same_bucket == first, "a video of the same padded size recompiled"
    assert new_bucket - same_bucket == 1, "a new padded size should recompile only the neck's window attention"
    assert any((tmp_path / "inductor").rglob("*.py")), "Inductor wrote no code to its cache"
