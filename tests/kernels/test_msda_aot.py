"""Every MSDA kernel configuration the dispatcher launches compiles for sm_90 (H100) and sm_80 (A100).

No GPU is needed: `python -m tarvis_fast.kernels.report` compiles with Triton's bundled ptxas. It must run
without TRITON_INTERPRET (interpreted kernels cannot be compiled), hence the subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tarvis_fast.kernels.msda.triton import HEAD_DIMS

KERNELS = ("forward", "backward")
# value dtype, and that of locations and weights when it differs (fp32 next to 16-bit values, as autocast gives)
DTYPES = ("fp16", "bf16", "fp32", "fp64", "fp16_fp32loc", "bf16_fp32loc")
ARCHS = (90, 80)


@pytest.mark.slow
def test_every_configuration_compiles_without_spills(tmp_path: Path) -> None:
    report = tmp_path / "msda_aot.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "tarvis_fast.kernels.report", "--module", "tarvis_fast.kernels.msda.triton",
         "--arch", *map(str, ARCHS), "--json", str(report)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"AOT compile failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    results = json.loads(report.read_text())

    # One configuration per kernel x dtypes x head size, each compiled for both architectures.
    for kernel in KERNELS:
        for dtype in DTYPES:
            for d in HEAD_DIMS:
                prefix = f"msda_{kernel}_{dtype}_D{d}_rows"
                archs = sorted(r["arch"] for r in results if r["name"].startswith(prefix))
                assert archs == sorted(ARCHS), f"{prefix}*: compiled for {archs}"
    assert len(results) == len(KERNELS) * len(DTYPES) * len(HEAD_DIMS) * len(ARCHS)

    for r in results:
        where = f"{r['name']} on sm_{r['arch']}"
        assert r["num_warps"] == 4 and r["registers"] <= 255, where
        if "_fp64_" in r["name"]:
            # fp64 exists for exact tests and gradcheck on a GPU, not for speed: a few spilled bytes are fine.
            assert r["spill_stores"] <= 64 and r["spill_loads"] <= 64, f"{where}: {r}"
        else:
            # The fast paths: no spills, and few enough registers for 4+ resident programs per SM.
            assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{where}: {r}"
            assert r["registers"] <= 128, f"{where}: {r['registers']} registers"
