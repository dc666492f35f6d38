"""Helpers shared by the ops: backend choice, whether Triton runs under its CPU interpreter, and the AOT
configuration type that each Triton module declares and `report` compiles (here, so that the kernel modules
and the report both import it and neither imports the other)."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import torch

Backend = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")


def triton_interpreted() -> bool:
    """True when Triton kernels run under the CPU interpreter (`TRITON_INTERPRET=1` before the kernels are defined)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device, op: str) -> Literal["triton", "torch"]:
    """Pick the implementation: "auto" is Triton on CUDA and the PyTorch path elsewhere.

    "triton" on CPU tensors needs the interpreter; without it the launch would fail deep inside Triton,
    so say so here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    if backend == "triton" and device.type != "cuda" and not triton_interpreted():
        raise RuntimeError(
            f"{op}: backend='triton' on {device.type} tensors needs the Triton interpreter; "
            "set TRITON_INTERPRET=1 before importing tarvis_fast.kernels, or use backend='torch'"
        )
    return backend  # type: ignore[return-value]


def choose_backend(backend: str, x: torch.Tensor, op: str,
                   load_kernels: Callable[[], ModuleType]) -> Literal["triton", "torch"]:
    """`resolve_backend`, plus the PyTorch path for "auto" where the Triton kernels cannot run: no triton
    package, a head size `x.shape[-1]` not in the kernel module's HEAD_DIMS, or a dtype not in its DTYPES
    (float64 also runs under the interpreter, for the tests). "triton" asked for explicitly raises instead.

    load_kernels imports the op's Triton module with an import statement (which torch.compile can trace,
    unlike importlib), so that the package imports without Triton."""
    impl = resolve_backend(backend, x.device, op)
    if impl != "triton":
        return impl
    try:
        kernels = load_kernels()
    except ImportError as exc:
        if backend == "auto":
            return "torch"
        raise RuntimeError(f"{op}: backend='triton' needs the triton package ({exc})") from exc
    dtypes = kernels.DTYPES
    if x.device.type != "cuda" and triton_interpreted():
        dtypes = (*dtypes, torch.float64)
    if x.shape[-1] in kernels.HEAD_DIMS and x.dtype in dtypes:
        return "triton"
    if backend == "auto":
        return "torch"
    raise ValueError(
        f"{op}: backend='triton' supports head sizes D in {kernels.HEAD_DIMS} and dtypes "
        f"{[str(d) for d in dtypes]} on {x.device.type}, got D={x.shape[-1]}, {x.dtype}"
    )


def check_floating(op: str, **tensors: torch.Tensor) -> None:
    """Every tensor floating point (fp16, bf16, fp32 or fp64), of one dtype, on one device."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    for name, t in tensors.items():
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{op}: inputs must share one dtype, got {dtypes}")
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs must be on one device, got {devices}")


def check_qkv(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Head-split attention inputs: q (B, H, Lq, D), k and v (B, H, Lk, D) with Lk and D >= 1, one floating
    dtype, one device."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{op}: {name} must be (B, H, L, D), got shape {tuple(t.shape)}")
    check_floating(op, q=q, k=k, v=v)
    if k.shape != v.shape:
        raise ValueError(f"{op}: k and v must have one shape (B, H, Lk, D), got {tuple(k.shape)} and {tuple(v.shape)}")
    b, h, _, d = q.shape
    if (k.shape[0], k.shape[1], k.shape[3]) != (b, h, d):
        raise ValueError(f"{op}: k {tuple(k.shape)} must share B, H and D with q {tuple(q.shape)}")
    if k.shape[2] == 0 or d == 0:
        raise ValueError(f"{op}: need at least one key and one channel, got Lk={k.shape[2]}, D={d}")


@dataclass(frozen=True)
class AOTSpec:
    """One compilable configuration of a kernel.

    signature maps every parameter, constexprs included, to a Triton type string ("*fp32", "i32",
    "constexpr"); constexprs gives the constexpr values; options holds num_warps / num_stages. Every pointer
    is compiled as 16-byte aligned, the specialisation Triton's launcher makes for the tensors our dispatchers
    pass, so that the compiled kernel is the one that runs.
    """

    name: str
    kernel: Any
    signature: dict[str, str]
    constexprs: dict[str, Any]
    options: dict[str, int] = field(default_factory=lambda: {"num_warps": 4, "num_stages": 2})

    def aligned_pointers(self) -> dict[tuple[int, ...], list[list[Any]]]:
        """ASTSource attrs marking every pointer argument 16-byte aligned."""
        return {(i,): [["tt.divisibility", 16]] for i, name in enumerate(self.kernel.arg_names)
                if self.signature[name].startswith("*")}
