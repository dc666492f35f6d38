"""Multi-scale deformable attention: Triton kernels, the PyTorch path, and the dispatching custom op."""
from .op import ms_deform_attn

__all__ = ["ms_deform_attn"]
