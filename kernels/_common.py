"""Helpers shared by the ops: backend choice and whether Triton runs under its CPU interpreter."""
from __future__ import annotations

import os
from typing import Literal

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
