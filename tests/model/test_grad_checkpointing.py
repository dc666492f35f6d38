"""Activation checkpointing (`set_grad_checkpointing`): off by default, never used without autograd, and the
same gradients as without it (float64, stochastic depth on)."""
from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

import tarvis_fast.model.grad_checkpointing as grad_checkpointing
from tarvis_fast.model import ObjectReferences, Task, TarViS, build_tarvis
from tarvis_fast.model.backbones import ResNet, SwinTransformer

from helpers.tiny import DATASETS, box_masks, clip, tiny_model

SWIN_DEPTHS = (2, 2, 2, 2)
NECK_LAYERS, DECODER_LAYERS = 2, 3


@pytest.fixture
def checkpoint_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of torch.utils.checkpoint.checkpoint made by `run_layer` (one entry per call)."""
    calls: list[int] = []
    real = grad_checkpointing.checkpoint

    def counting(fn: Callable, *args, **kwargs):
        calls.append(1)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(grad_checkpointing, "checkpoint", counting)
    return calls


def swin_model() -> TarViS:
    """A TarViS on a small Swin (stochastic depth 0.2), width 32, float64."""
    torch.manual_seed(0)
    backbone = SwinTransformer(embed_dim=8, depths=SWIN_DEPTHS, num_heads=(1, 1, 2, 2), window=4, drop_path_rate=0.2)
    return build_tarvis(backbone, semantic_classes=DATASETS, num_instance_queries=6, dim=32, num_heads=2,
                        decoder_layers=DECODER_LAYERS, decoder_ffn_dim=48, neck_layers=NECK_LAYERS, neck_ffn_dim=48,
                        object_encoder_layers=1, kernel_backend="torch").double().train()


def loss_and_gradients(model: TarViS, task: Task) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # the same stochastic-depth draws in both models
    images = clip(frames=2).double()
    if task is Task.VOS:
        objects = ObjectReferences(masks=box_masks(1, [(4, 8, 20, 40)], 1, 64, 128), mask_frames=torch.tensor([0]))
        out = model(images, task, objects=objects)
        loss = sum(layer.object_logits.square().mean() + layer.background_logits.mean() for layer in out.layers)
    else:
        out = model(images, task, dataset="KITTI_STEP")
        loss = sum(layer.mask_logits.square().mean() + layer.class_logits.square().mean() for layer in out.layers)
    model.zero_grad()
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_off_by_default(checkpoint_calls: list[int]) -> None:
    model = swin_model()
    assert not any(m.grad_checkpointing for m in model.modules() if isinstance(m, grad_checkpointing.GradCheckpointing))
    loss_and_gradients(model, Task.VPS)
    assert checkpoint_calls == []


def test_switch_covers_backbone_blocks_neck_and_decoder_layers_only_under_autograd(checkpoint_calls: list[int]) -> None:
    model = swin_model()
    model.set_grad_checkpointing()
    loss_and_gradients(model, Task.VPS)
    assert len(checkpoint_calls) == sum(SWIN_DEPTHS) + 2 * NECK_LAYERS + DECODER_LAYERS
    checkpoint_calls.clear()
    with torch.no_grad():
        model(clip().double(), Task.VPS, dataset="KITTI_STEP")
    assert checkpoint_calls == []
    model.set_grad_checkpointing(False)
    loss_and_gradients(model, Task.VPS)
    assert checkpoint_calls == []


@pytest.mark.parametrize("task", [Task.VPS, Task.VOS])
def test_same_gradients_with_and_without_checkpointing(task: Task) -> None:
    plain = swin_model()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing()
    loss, expected = loss_and_gradients(plain, task)
    loss_checkpointed, actual = loss_and_gradients(checkpointed, task)
    torch.testing.assert_close(loss_checkpointed, loss, rtol=0, atol=0)
    assert actual.keys() == expected.keys() and len(expected) > 100
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=name)


def test_resnet_blocks_same_gradients() -> None:
    # In-place ReLUs inside the bottlenecks must survive the recompute.
    torch.manual_seed(0)
    plain = ResNet((1, 2, 1, 1)).double()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing()
    images = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        sum(x.square().mean() for x in model(images).values()).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_tiny_model_without_a_checkpointable_backbone() -> None:
    # A backbone without the switch keeps its activations; the neck and decoder still take it.
    model = tiny_model(kernel_backend="torch")
    model.set_grad_checkpointing()
    assert model.decoder.grad_checkpointing and model.backbone.fpn.transformer.encoder.grad_checkpointing
