"""Masked cross-attention: Triton kernels, the PyTorch paths, and the dispatching custom op."""
from .op import masked_cross_attention

__all__ = ["masked_cross_attention"]
