"""Fast ops for TarViS: multi-scale deformable attention, masked cross-attention, window attention."""
from .msda import ms_deform_attn
