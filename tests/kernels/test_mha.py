"""MultiheadAttention: loads nn.MultiheadAttention's state_dict and computes what it computes.

The masked case is compared with nn.MultiheadAttention under the bool mask the original TarViS built from the
same logits: blocked where the logit is < 0, fully blocked rows unblocked, repeated per head.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tarvis_fast.kernels import MultiheadAttention

C, HEADS = 64, 4


def pair(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[nn.MultiheadAttention, MultiheadAttention]:
    """nn.MultiheadAttention with random (nonzero) biases, and ours loaded from its state_dict."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(C, HEADS, batch_first=True).to(dtype)
    with torch.no_grad():
        theirs.in_proj_bias.normal_()
        theirs.out_proj.bias.normal_()
    ours = MultiheadAttention(C, HEADS).to(dtype)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def original_bool_mask(mask_logits: torch.Tensor, heads: int) -> torch.Tensor:
    """The original's construction: (B·H, Q, K) bool, True = blocked."""
    blocked = mask_logits.sigmoid() < 0.5
    blocked[blocked.all(dim=-1)] = False
    return blocked.repeat_interleave(heads, dim=0)


def test_state_dict_keys_shapes_and_init_match_nn_multihead_attention() -> None:
    theirs, ours = nn.MultiheadAttention(C, HEADS, batch_first=True), MultiheadAttention(C, HEADS)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict(), strict=True)
    # nn.MultiheadAttention's init: xavier-uniform in_proj over (3C, C), i.e. U(-a, a) with a = sqrt(6 / (C + 3C)),
    # whose standard deviation is a / sqrt(3); zero biases.
    bound = math.sqrt(6 / (4 * C))
    assert ours.in_proj_weight.abs().max() <= bound
    assert abs(ours.in_proj_weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    assert not ours.in_proj_bias.any() and not ours.out_proj.bias.any()


@pytest.mark.parametrize("backend", ["auto", "sdpa", "torch", "triton"])
def test_unmasked_self_and_cross_attention_match(backend: str) -> None:
    theirs, ours = pair()
    x, pos = randn(3, 11, C, seed=1), randn(3, 11, C, seed=2)
    qk = x + pos  # self-attention as in the neck: one tensor for query and key, the value without pos
    torch.testing.assert_close(ours(qk, qk, x, backend=backend), theirs(qk, qk, x, need_weights=False)[0],
                               atol=1e-12, rtol=0)
    memory = randn(3, 17, C, seed=3)
    torch.testing.assert_close(ours(x, memory, memory, backend=backend),
                               theirs(x, memory, memory, need_weights=False)[0], atol=1e-12, rtol=0)


def test_masked_matches_nn_multihead_attention_with_original_mask_values_and_gradients() -> None:
    theirs, ours = pair()
    query, memory = randn(2, 9, C, seed=4), randn(2, 23, C, seed=5)
    mask_logits = randn(2, 9, 23, seed=6)
    mask_logits[0, 3] = -1.0  # every key blocked: attends to all
    mask_logits[1, 5] = -1.0
    mask_logits[1, 5, 7] = 0.0  # a single open key (logit 0 is open: sigmoid(0) = 0.5 is not < 0.5)
    grad_out = randn(2, 9, C, seed=7)

    inputs = [t.clone().requires_grad_() for t in (query, memory)]
    out = ours(inputs[0], inputs[1], inputs[1], mask_logits=mask_logits, backend="torch")
    ours_grads = torch.autograd.grad(out, [*inputs, *ours.parameters()], grad_out)

    ref_inputs = [t.clone().requires_grad_() for t in (query, memory)]
    expected = theirs(ref_inputs[0], ref_inputs[1], ref_inputs[1], attn_mask=original_bool_mask(mask_logits, HEADS),
                      need_weights=False)[0]
    theirs_grads = torch.autograd.grad(expected, [*ref_inputs, *theirs.parameters()], grad_out)

    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    # The single open key's value passes straight through: out = out_proj(v_proj(memory[1, 7])).
    w, b = theirs.in_proj_weight[2 * C:], theirs.in_proj_bias[2 * C:]
    torch.testing.assert_close(out[1, 5], theirs.out_proj(memory[1, 7] @ w.T + b), atol=1e-12, rtol=0)
    assert len(ours_grads) == len(theirs_grads)
    for got, want in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_chunked_batch_equals_one_piece_at_neck_shape(masked: bool) -> None:
    # The neck's temporal attention at T = 2: windows of 84·2 tokens, 8 heads of 32 (C = 256); 7 windows in
    # chunks of 3 (the last one short).
    torch.manual_seed(8)
    theirs = nn.MultiheadAttention(256, 8, batch_first=True)
    ours = MultiheadAttention(256, 8)
    ours.load_state_dict(theirs.state_dict())
    windows, pos = randn(7, 168, 256, seed=9, dtype=torch.float32), randn(7, 168, 256, seed=10, dtype=torch.float32)
    qk = windows + pos
    mask_logits = randn(7, 168, 168, seed=11, dtype=torch.float32) if masked else None
    with torch.no_grad():
        whole = ours(qk, qk, windows, mask_logits=mask_logits)
        chunked = ours(qk, qk, windows, mask_logits=mask_logits, max_batch_per_chunk=3)
        attn_mask = None if mask_logits is None else original_bool_mask(mask_logits, 8)
        expected = theirs(qk, qk, windows, attn_mask=attn_mask, need_weights=False)[0]
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(whole, expected, atol=2e-5, rtol=0)


def test_bad_inputs_are_named() -> None:
    ours = MultiheadAttention(C, HEADS)
    x = torch.randn(2, 5, C)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"query must be \(B, L, 64\)"):
        ours(x[..., :8], x, x)
    with pytest.raises(ValueError, match="key and value must have one shape"):
        ours(x, x, x[:, :4])
    with pytest.raises(ValueError, match="batch size"):
        ours(x, x[:1], x[:1])
    with pytest.raises(ValueError, match=r"mask_logits must be \(B, Lq, Lk\)"):
        ours(x, x, x, mask_logits=torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="max_batch_per_chunk"):
        ours(x, x, x, max_batch_per_chunk=0)
