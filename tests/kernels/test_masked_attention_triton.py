"""masked_cross_attention's Triton path (under the interpreter without a GPU) against the PyTorch path in
float64, which test_masked_attention.py checks against a gathered per-query reference; values and gradients.

Shapes have tails everywhere: Q = 70 and K = 300 are multiples of no tile size and K is not a multiple of
the 32 keys of a mask word. The mask has every kind of row (see `make_inputs`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tarvis_fast.kernels import MultiheadAttention, masked_cross_attention
from tarvis_fast.kernels._common import triton_interpreted
from tarvis_fast.kernels.masked_attention.reference import masked_cross_attention_torch

if not (torch.cuda.is_available() or triton_interpreted()):
    pytest.skip("the Triton path needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)

from tarvis_fast.kernels.masked_attention import triton as kernels  # noqa: E402  (after the interpreter check)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The interpreter runs the kernels in fp64, which checks their indexing to rounding level; on a GPU they are
# built for fp16/bf16/fp32 only, so the same checks run in fp32 (3xTF32 dots, errors ~1e-6) there.
EXACT, EXACT_ATOL = (torch.float32, 1e-5) if DEVICE == "cuda" else (torch.float64, 1e-12)


def make_inputs(batch: int, heads: int, queries: int, keys: int, dim: int, dtype: torch.dtype, seed: int = 0):
    """q, k, v as strided head-split views of (B, L, H·D) projections, and mask logits with every row kind:
    row 0 fully blocked, row 1 a single open key (in the middle, so that other K ranges have none), row 2 all
    open, the rest about 30 % open."""
    gen = torch.Generator().manual_seed(seed)

    def heads_view(length: int) -> torch.Tensor:
        x = torch.randn(batch, length, heads * dim, generator=gen, dtype=torch.float64).to(dtype)
        return x.view(batch, length, heads, dim).transpose(1, 2).to(DEVICE)

    q, k, v = heads_view(queries), heads_view(keys), heads_view(keys)
    mask_logits = torch.randn(batch, queries, keys, generator=gen) - 0.5
    mask_logits[:, 0] = -3.0
    mask_logits[:, 1] = -3.0
    mask_logits[:, 1, keys // 2] = 0.0
    mask_logits[:, 2] = 1.0
    return q, k, v, mask_logits.to(DEVICE)


def reference_with_grads(q, k, v, mask_logits, grad_out):
    """The PyTorch path in float64 on the same (rounded) inputs: out and (dq, dk, dv)."""
    inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = masked_cross_attention_torch(*inputs, mask_logits)
    return out, torch.autograd.grad(out, inputs, grad_out.double())


def triton_with_grads(q, k, v, mask_logits, grad_out):
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    out = masked_cross_attention(*inputs, mask_logits, backend="triton")
    return out, torch.autograd.grad(out, inputs, grad_out)


@pytest.mark.parametrize("dim", [32, 64])
def test_values_and_gradients(dim: int) -> None:
    q, k, v, mask_logits = make_inputs(2, 2, 70, 300, dim, EXACT)
    grad_out = torch.randn(q.shape, dtype=EXACT, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    out, grads = triton_with_grads(q, k, v, mask_logits, grad_out)
    ref_out, ref_grads = reference_with_grads(q, k, v, mask_logits, grad_out)
    torch.testing.assert_close(out.double(), ref_out, atol=EXACT_ATOL, rtol=0)
    for name, got, want in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(got.double(), want, atol=EXACT_ATOL, rtol=0, msg=lambda m: f"d{name}: {m}")


def test_split_k_ranges_and_small_tiles() -> None:
    # Tiles of 16 queries x 32 keys: 3 Q tiles and 7 K tiles (both with tails), merged from K ranges of 3, 3
    # and 1 tiles; row 1's single open key lies in the second range, so the others' partial max is -inf.
    config = kernels.KernelConfig(*(kernels.Launch(16, 32, 4, 1),) * 3)
    splits = 3
    q, k, v, mask_logits = make_inputs(1, 2, 40, 200, 32, EXACT, seed=2)
    grad_out = torch.randn(q.shape, dtype=EXACT, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    mask = kernels.pack_mask(mask_logits)
    out, lse = kernels.attention_forward(q, k, v, mask, config=config, splits=splits)
    grads = kernels.attention_backward(grad_out, q, k, v, out, lse, mask, config=config, splits=splits)
    ref_out, ref_grads = reference_with_grads(q, k, v, mask_logits, grad_out)
    torch.testing.assert_close(out.double(), ref_out, atol=EXACT_ATOL, rtol=0)
    for name, got, want in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(got.double(), want, atol=EXACT_ATOL, rtol=0, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize(
    ("dtype", "atol_out", "atol_grad"),
    # Against float64 on the same rounded inputs, so only the kernel's own rounding remains: products and
    # outputs rounded to the input dtype (unit roundoff 2**-24, 2**-11, 2**-8) on values up to ~4. Measured
    # under the interpreter (seeds 4, 11, 12): max errors out / grads fp32 3.8e-7 / 6.4e-7, fp16 3.6e-4 /
    # 8.4e-4, bf16 3.8e-3 / 1.5e-2; the bounds leave room for the GPU, which also rounds P to bf16 before P·V.
    [(torch.float32, 5e-6, 5e-6), (torch.float16, 2e-3, 4e-3), (torch.bfloat16, 1.6e-2, 5e-2)],
)
def test_low_precision_inputs(dtype: torch.dtype, atol_out: float, atol_grad: float) -> None:
    q, k, v, mask_logits = make_inputs(1, 2, 70, 300, 32, dtype, seed=4)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(5)).to(dtype).to(DEVICE)
    out, grads = triton_with_grads(q, k, v, mask_logits.to(dtype), grad_out)
    ref_out, ref_grads = reference_with_grads(q, k, v, mask_logits.to(dtype), grad_out)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    torch.testing.assert_close(out.double(), ref_out, atol=atol_out, rtol=0)
    for name, got, want in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(got.double(), want, atol=atol_grad, rtol=0, msg=lambda m: f"d{name}: {m}")


def test_pack_mask_bits_and_open_rows() -> None:
    # 37 queries x 300 keys, read through a transposed view; NaN and -0.0 are open (not < 0), row 5 has
    # no open key, row 6 only its last key (in the partial last word).
    logits = torch.randn(2, 300, 37, generator=torch.Generator().manual_seed(6)).transpose(1, 2)
    logits[0, 3, 10] = float("nan")
    logits[0, 3, 11] = -0.0
    logits[1, 5] = -1.0
    logits[1, 6] = -1.0
    logits[1, 6, 299] = 2.0
    packed = kernels.pack_mask(logits.to(DEVICE))

    is_open = ~(logits < 0)
    padded = torch.nn.functional.pad(is_open, (0, 320 - 300)).view(2, 37, 10, 32).long()
    words = (padded << torch.arange(32)).sum(-1)  # int64, then the int32 two's-complement bit pattern
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    assert torch.equal(packed.words.cpu(), words.transpose(1, 2))
    assert torch.equal(packed.row_open.cpu(), is_open.any(-1).to(torch.int32))
    assert packed.row_open[1, 5] == 0 and packed.row_open[1, 6] == 1


def test_custom_ops_pass_opcheck() -> None:
    q, k, v, mask_logits = make_inputs(1, 2, 20, 40, 32, EXACT, seed=7)
    q, k, v = (t.contiguous().requires_grad_() for t in (q, k, v))
    words, row_open = torch.ops.tarvis_fast.masked_attention_pack_mask(mask_logits)
    out, lse = torch.ops.tarvis_fast.masked_cross_attention(q, k, v, words, row_open)
    grad_out = torch.randn_like(out)
    torch.library.opcheck(torch.ops.tarvis_fast.masked_attention_pack_mask, (mask_logits,))
    torch.library.opcheck(torch.ops.tarvis_fast.masked_cross_attention, (q, k, v, words, row_open))
    torch.library.opcheck(torch.ops.tarvis_fast.masked_cross_attention_backward,
                          (grad_out, *(t.detach() for t in (q, k, v, out, lse)), words, row_open))


def test_torch_compile_fullgraph_forward_and_backward() -> None:
    # Inductor (the default backend) around the custom ops: cold compile ~20 s on 2 cores.
    q, k, v, mask_logits = make_inputs(1, 2, 20, 40, 32, torch.float32, seed=8)

    def attend(q, k, v, mask_logits):
        return masked_cross_attention(q * 2.0, k, v, mask_logits, backend="triton").sum(dim=1)

    compiled = torch.compile(attend, fullgraph=True)
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    out = compiled(*inputs, mask_logits)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    ref_inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    ref = attend(*ref_inputs, mask_logits)
    ref_grads = torch.autograd.grad(ref.square().sum(), ref_inputs)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_multihead_attention_module_on_triton_matches_torch_path() -> None:
    # Masked self-attention (key is query): q and k are strided views of one (B, L, 2C) projection; 8 heads of 32.
    torch.manual_seed(9)
    attn = MultiheadAttention(256, 8).to(EXACT).to(DEVICE)
    x = torch.randn(2, 24, 256, dtype=EXACT, device=DEVICE)
    mask_logits = torch.randn(2, 24, 24, dtype=EXACT, device=DEVICE)
    mask_logits[0, 3] = -1.0
    results = []
    for backend in ("triton", "torch"):
        inp = x.clone().requires_grad_()
        out = attn(inp, inp, inp, mask_logits=mask_logits, backend=backend)
        results.append((out, *torch.autograd.grad(out.square().sum(), [inp, *attn.parameters()])))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, atol=EXACT_ATOL, rtol=0)


def test_dispatch() -> None:
    q, k, v, mask_logits = make_inputs(1, 1, 4, 8, 16, torch.float32)
    with pytest.raises(ValueError, match=r"supports head sizes D in \(32, 64\)"):
        masked_cross_attention(q, k, v, mask_logits, backend="triton")
    # "auto" falls back to the PyTorch path for a head size without kernels.
    torch.testing.assert_close(masked_cross_attention(q, k, v, mask_logits),
                               masked_cross_attention_torch(q, k, v, mask_logits))


@pytest.mark.slow
def test_every_configuration_compiles_for_sm80_and_sm90_without_spills(tmp_path) -> None:
    """AOT compile (no GPU needed) of every configuration the dispatcher can launch, one process per arch."""
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}

    def report(arch: int) -> list[dict]:
        out = tmp_path / f"sm_{arch}.json"
        subprocess.run(
            [sys.executable, "-m", "tarvis_fast.kernels.report", "--arch", str(arch), "--json", str(out),
             "--module", "tarvis_fast.kernels.masked_attention.triton"],
            env=env, check=True, capture_output=True, text=True,
        )
        return json.loads(out.read_text())

    with ThreadPoolExecutor(2) as pool:
        results = [row for rows in pool.map(report, (90, 80)) for row in rows]
    assert len(results) == 2 * len(kernels.aot_specs())
    spilled = [(r["name"], r["arch"], r["spill_stores"]) for r in results if r["spill_stores"] or r["spill_loads"]]
    assert not spilled, f"register spills: {spilled}"
