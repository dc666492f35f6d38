"""The forward under torch.compile, and the Triton kernel path (under the interpreter on CPU) against the
PyTorch path, on a tiny model.

torch.compile runs with backend="aot_eager": Dynamo captures the whole forward as one graph (fullgraph=True
fails on any graph break) and AOTAutograd traces forward and backward, in seconds; Inductor's code generation
on top takes minutes on a 2-core CPU and is timed in bench/test_bench_model.py instead.
"""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from tarvis_fast.model import ObjectReferences, Task
from tarvis_fast.model.backbones import SwinTransformer
from tarvis_fast.model.compile import compile_regions

from helpers.tiny import box_masks, clip, tiny_model


@pytest.mark.slow
def test_compiled_forward_equals_eager() -> None:
    model = tiny_model().eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    images = clip()
    with torch.no_grad():
        eager = model(images, Task.VIS, dataset="YOUTUBE_VIS")
        graph = compiled(images, Task.VIS, dataset="YOUTUBE_VIS")
    for a, b in zip(eager.layers, graph.layers):
        torch.testing.assert_close(b.mask_logits, a.mask_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.class_logits, a.class_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_step_gives_eager_gradients() -> None:
    images = clip(batch=2)

    def gradients(compile_it: bool) -> dict[str, torch.Tensor]:
        model = tiny_model()
        forward = torch.compile(model, fullgraph=True, backend="aot_eager") if compile_it else model
        out = forward(images, Task.VPS, dataset="KITTI_STEP")
        loss = sum(layer.mask_logits.square().mean() + layer.class_logits.square().mean() for layer in out.layers)
        loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    eager, compiled = gradients(False), gradients(True)
    assert eager.keys() == compiled.keys() and len(eager) > 100
    for name in eager:
        # float32 summation-order error scales with the tensor's largest gradient: an absolute floor of 1e-6 alone
        # failed near-zero entries of a tensor whose gradients reach ~5 (a 1.9e-6 difference).
        scale = float(eager[name].abs().max().clamp(min=1.0))
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_triton_kernels_match_the_pytorch_path() -> None:
    # Same weights, kernel_backend "triton" (interpreted on CPU) against "torch": deformable attention in the
    # neck, masked cross-attention in the decoder; VIS and a mixed VOS call.
    # Two heads of 32 channels: a head size the Triton kernels are built for.
    torch_model = tiny_model(kernel_backend="torch", num_instance_queries=4, num_heads=2).eval()
    triton_model = tiny_model(kernel_backend="triton", num_instance_queries=4, num_heads=2).eval()
    triton_model.load_state_dict(torch_model.state_dict())
    images = clip(height=64, width=64)
    refs = ObjectReferences(masks=box_masks(1, [(8, 8, 40, 30)], 1, 64, 64), mask_frames=torch.tensor([0]),
                            points=torch.tensor([[[0.7, 0.6]]]), point_frames=torch.tensor([[1]]))
    with torch.no_grad():
        for kwargs in ({"task": Task.VIS, "dataset": "KITTI_STEP"}, {"task": Task.VOS, "objects": refs}):
            expected = torch_model(images, **kwargs).layers
            actual = triton_model(images, **kwargs).layers
            for a, e in zip(actual, expected):
                for name, value in vars(e).items():
                    torch.testing.assert_close(getattr(a, name), value, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.slow
def test_triton_kernels_give_the_pytorch_paths_gradients() -> None:
    images = clip(height=64, width=64)

    def gradients(backend: str) -> dict[str, torch.Tensor]:
        model = tiny_model(kernel_backend=backend, num_instance_queries=4, num_heads=2)
        # Non-zero query weights in the deformable attention, so that its offsets get gradients too.
        generator = torch.Generator().manual_seed(1)
        for name, param in model.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                torch.nn.init.normal_(param, std=0.01, generator=generator)
        out = model(images, Task.VIS, dataset="KITTI_STEP")
        loss = sum(layer.mask_logits.square().mean() + layer.class_logits.square().mean() for layer in out.layers)
        loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    expected, actual = gradients("torch"), gradients("triton")
    assert actual.keys() == expected.keys()
    for name in expected:
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-4 * scale, msg=name)



@pytest.mark.slow
def test_regular_and_shifted_swin_blocks_share_one_graph_per_stage() -> None:
    # The backbone's compile time is its graph count: regular and shifted windows are data (WindowLayout), not a
    # branch on the block's shift, so one stage's blocks trace once. Dynamo with the "eager" backend counts the
    # graphs that compile_regions hands to Inductor, in seconds.
    torch._dynamo.reset()
    counters.clear()
    model = SwinTransformer(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window=4,
                            drop_path_rate=0.0).eval()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images)
        assert compile_regions(model, backend="eager") == 8
        actual = model(images)
    assert counters["stats"]["unique_graphs"] == 4  # one per stage
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])
