"""Activation checkpointing switches (timm's `set_grad_checkpointing`): a module that runs a stack of layers
runs each through `run_layer`, which, when the switch is on and gradients are being recorded, keeps only the
layer's inputs and recomputes its activations in the backward pass. Off by default; inference (no_grad) is
never affected.

    model.set_grad_checkpointing()       # every switch in the model: backbone blocks, neck and decoder layers
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.utils.checkpoint import checkpoint

T = TypeVar("T")


class GradCheckpointing:
    """Mixin for an `nn.Module`: the switch of this module and of every sub-module that has one."""

    grad_checkpointing: bool = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for module in self.modules():  # type: ignore[attr-defined]
            if isinstance(module, GradCheckpointing):
                module.grad_checkpointing = enable

    def run_layer(self, layer: Callable[..., T], *args: Any) -> T:
        """layer(*args), checkpointed when the switch is on and autograd records."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            # Non-reentrant: the reentrant variant gives parameters no gradient when no input requires one (the
            # first backbone block's images). The RNG state is restored, so stochastic depth draws the same again.
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)
