"""Ahead-of-time compile of every Triton kernel configuration for NVIDIA targets, without a GPU.

    python -m tarvis_fast.kernels.report [--arch 90 80] [--module M ...] [--json out.json]

prints, per kernel configuration and architecture, registers per thread, spill stores/loads (from
`ptxas -v`) and Triton's dynamic shared memory. Each kernel module lists its configurations in a function
`aot_specs() -> list[AOTSpec]`; add a new module to `KERNEL_MODULES`.

It must run in a process where `TRITON_INTERPRET` is unset: under the interpreter `@triton.jit` returns an
interpreter object that cannot be compiled.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ._common import AOTSpec

KERNEL_MODULES: tuple[str, ...] = (
    "tarvis_fast.kernels.msda.triton",
    "tarvis_fast.kernels.masked_attention.triton",
)
ARCHS: tuple[int, ...] = (90, 80)


@dataclass
class AOTResult:
    name: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int
    num_warps: int
    num_stages: int


def _ptxas() -> Path:
    import triton.backends.nvidia as nvidia

    return Path(nvidia.__file__).parent / "bin" / "ptxas"


_PTXAS_USAGE = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_spec(spec: AOTSpec, arch: int) -> AOTResult:
    """Compile one spec for sm_<arch>; raise if Triton or ptxas rejects it."""
    import triton
    from triton.backends.compiler import GPUTarget

    source = triton.compiler.ASTSource(fn=spec.kernel, signature=spec.signature, constexprs=spec.constexprs, attrs=spec.aligned_pointers())
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(spec.options))
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "kernel.ptx"
        ptx.write_text(compiled.asm["ptx"])
        gpu_name = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
        out = subprocess.run(
            [str(_ptxas()), "-v", f"--gpu-name={gpu_name}", str(ptx), "-o", str(Path(tmp) / "kernel.cubin")],
            capture_output=True, text=True, check=True,
        ).stderr
    regs = _PTXAS_USAGE.search(out)
    spill = _PTXAS_SPILL.search(out)
    if regs is None or spill is None:
        raise RuntimeError(f"could not read ptxas -v output for {spec.name} on sm_{arch}:\n{out}")
    return AOTResult(
        name=spec.name, arch=arch, registers=int(regs.group(1)),
        spill_stores=int(spill.group(1)), spill_loads=int(spill.group(2)),
        shared_bytes=int(compiled.metadata.shared),
        num_warps=int(compiled.metadata.num_warps), num_stages=int(compiled.metadata.num_stages),
    )


def all_specs(modules: tuple[str, ...] = KERNEL_MODULES) -> list[AOTSpec]:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("kernels.report needs TRITON_INTERPRET unset: interpreted kernels cannot be compiled")
    specs: list[AOTSpec] = []
    for module in modules:
        specs.extend(importlib.import_module(module).aot_specs())
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), help="compute capabilities (90 = H100)")
    parser.add_argument("--module", nargs="+", default=list(KERNEL_MODULES), help="kernel modules to compile")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    results = [compile_spec(spec, arch) for spec in all_specs(tuple(args.module)) for arch in args.arch]
    header = f"{'kernel configuration':<56} {'arch':>5} {'regs':>5} {'spill st/ld (B)':>16} {'smem (B)':>9} {'warps':>5} {'stages':>6}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:<56} sm_{r.arch:<2} {r.registers:>5} {f'{r.spill_stores}/{r.spill_loads}':>16} "
              f"{r.shared_bytes:>9} {r.num_warps:>5} {r.num_stages:>6}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
