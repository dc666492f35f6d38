"""Fast ops for TarViS: multi-scale deformable attention, masked cross-attention, window attention."""
from .masked_attention import masked_cross_attention
from .mha import MultiheadAttention
from .msda import ms_deform_attn
from .window_attention import window_attention

__all__ = ["MultiheadAttention", "masked_cross_attention", "ms_deform_attn", "window_attention"]
