"""The temporal neck ("pixel decoder", SPEC §2.3): multi-scale deformable attention per frame, interleaved
with space-time window attention across the clip, then one FPN level and the mask features.

Input: backbone maps res2..res5 of every frame. Output: `[F32, F16, F8, M4]`, each (B, C, T, h, w): the
encoder's three levels (coarse to fine) and the 1/4-resolution mask features.

Inside the encoder level 0 is the coarsest (res5). Tokens of one frame are the three levels flattened and
concatenated, S = Σ h_l·w_l. The window attention needs the 1/32 map to have even sides, i.e. images
padded to a multiple of 64: each window covers the same 64×64 pixels at every level (2×2, 4×4 and 8×8
cells: 84 tokens per frame, 84·T per window).

Parameter names follow the original's checkpoints (`backbone.fpn.*`, SPEC §8).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.kernels import MultiheadAttention, ms_deform_attn
from tarvis_fast.model.grad_checkpointing import GradCheckpointing
from tarvis_fast.model.position import sine_embedding_2d, sine_embedding_3d

ENCODER_FEATURES = ("res5", "res4", "res3")  # encoder levels 0, 1, 2: coarse to fine
WINDOW_PIXELS = 64  # side of a space-time attention window in image pixels; images are padded to this
# Inference-only memory guard of the original: windows longer than this run in 8 batches (same result).
_CHUNKED_WINDOW_LENGTH = 500
_WINDOW_CHUNKS = 8


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR): every query takes `num_points` bilinear samples
    per head and level around its reference point, at learned offsets, and sums them with learned weights.

    Args:
        dim: model width C (split over `num_heads` heads).
        num_levels, num_heads, num_points: L, M and P.
        backend: kernel choice passed to `tarvis_fast.kernels.ms_deform_attn` ("auto", "triton", "torch").
    """

    def __init__(self, dim: int = 256, num_levels: int = 3, num_heads: int = 8, num_points: int = 4,
                 backend: str = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MSDeformAttn: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_levels, self.num_heads, self.num_points = num_levels, num_heads, num_points
        self.backend = backend
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Offsets start on a star: head h looks along the angle 2πh/M (scaled so that the larger component
        # is 1), point p at distance p + 1 cells, at every level.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack((angles.cos(), angles.sin()), -1)
        directions = directions / directions.abs().amax(-1, keepdim=True)
        distance = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        offsets = directions[:, None, None, :] * distance[None, None, :, None]  # (M, 1, P, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(offsets.expand(-1, self.num_levels, -1, -1).reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, query: Tensor, reference_points: Tensor, value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        """
        query:             (N, Lq, C)
        reference_points:  (Lq, 2) normalised (x, y), the same for every level and batch element
        value:             (N, S, C) tokens of all levels, laid out as `spatial_shapes` (L, 2) says
        level_start_index: (L,) first token of each level
        returns            (N, Lq, C)
        """
        n, lq, _ = query.shape
        m, lv, p = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value).view(n, value.shape[1], m, -1)
        offsets = self.sampling_offsets(query).view(n, lq, m, lv, p, 2)
        weights = self.attention_weights(query).view(n, lq, m, lv * p).softmax(-1).view(n, lq, m, lv, p)
        # Offsets are in cells of each level: divide by the level's (W, H).
        cells = spatial_shapes.flip(-1).to(reference_points.dtype)  # (L, 2) as (W, H)
        locations = reference_points[None, :, None, None, None, :] + offsets / cells[:, None, :]
        # Under autocast the value is half precision; the locations and weights stay float32 (in bf16 a
        # location can be a third of a pixel off), which the op accepts next to a half-precision value.
        precise = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype
        out = ms_deform_attn(value, spatial_shapes, level_start_index, locations.to(precise), weights.to(precise),
                             backend=self.backend)
        return self.output_proj(out)


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention over the frame's three levels, then an FFN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_levels: int = 3, backend: str = "auto") -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(dim, num_levels, num_heads, num_points=4, backend=backend)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        """src (B·T, S, C), pos (S, C), reference_points (S, 2) -> (B·T, S, C)"""
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class WindowAttentionLayer(nn.Module):
    """Post-norm layer of self-attention inside each space-time window, then an FFN.

    It works on the window layout (B·P, K·T, C) (P windows, K tokens per window and frame); everything but
    the attention is per token, so the layout does not matter to it.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, backend: str = "auto") -> None:
        super().__init__()
        self.backend = backend
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, windows: Tensor, pos: Tensor) -> Tensor:
        """windows (B·P, K·T, C), pos (B·P, K·T, C) -> (B·P, K·T, C)"""
        chunk = None
        if not self.training and windows.shape[1] > _CHUNKED_WINDOW_LENGTH:
            chunk = math.ceil(windows.shape[0] / _WINDOW_CHUNKS)
        qk = windows + pos
        attn = self.self_attn(qk, qk, windows, max_batch_per_chunk=chunk, backend=self.backend)
        windows = self.norm1(windows + attn)
        return self.norm2(windows + self.linear2(F.relu(self.linear1(windows))))


def window_token_index(level_shapes: Sequence[tuple[int, int]], device: torch.device | None = None) -> Tensor:
    """(P, K) flat per-frame token indices of every window: windows row-major over the image, and inside a
    window level 0 first, cells row-major within a level.

    Level l (of shape h_l × w_l) is cut into windows of 2^(l+1) cells a side, so the coarsest map must have even
    sides and every level must be twice the size of the previous one.
    """
    h0, w0 = level_shapes[0]
    if h0 % 2 or w0 % 2:
        raise ValueError(f"window attention needs even sides at the coarsest level, got {h0}x{w0} "
                         f"(pad images to a multiple of {WINDOW_PIXELS})")
    rows, cols = h0 // 2, w0 // 2
    parts, offset = [], 0
    for level, (h, w) in enumerate(level_shapes):
        k = 2 ** (level + 1)
        if (h, w) != (rows * k, cols * k):
            raise ValueError(f"level {level} is {h}x{w}; window attention expects {rows * k}x{cols * k} "
                             f"(every level twice the size of the previous one)")
        index = torch.arange(h * w, device=device).view(rows, k, cols, k).permute(0, 2, 1, 3).reshape(rows * cols, k * k)
        parts.append(index + offset)
        offset += h * w
    return torch.cat(parts, 1)


def window_orders(index: Tensor, frames: int) -> tuple[Tensor, Tensor]:
    """Gather indices between a clip's tokens, flattened (T·S), and the window layout, from `window_token_index`
    (P, K):

    order   (P, K·T): the flat position t·S + s of each window token; within a window its K tokens in `index`
            order and, for each token, its T frames (frame fastest)
    inverse (T, S):   the window-layout position of each clip token (the inverse permutation)

    Moving between the layouts is then one gather each way, instead of a gather plus a permuted copy.
    """
    num_tokens = index.numel()
    frame_offsets = torch.arange(frames, device=index.device) * num_tokens
    order = (index[:, :, None] + frame_offsets).flatten(1)
    inverse = order.flatten().argsort().view(frames, num_tokens)
    return order, inverse


def to_windows(x: Tensor, order: Tensor) -> Tensor:
    """(B, T, S, C) per-frame tokens -> (B·P, K·T, C) windows (`order` from `window_orders`)."""
    b, t, s, c = x.shape
    return x.reshape(b, t * s, c)[:, order].flatten(0, 1)


def from_windows(windows: Tensor, inverse: Tensor) -> Tensor:
    """Inverse of `to_windows`: (B·P, K·T, C) -> (B, T, S, C) (`inverse` from `window_orders`)."""
    return windows.reshape(-1, inverse.numel(), windows.shape[-1])[:, inverse]


class DeformableTemporalEncoder(GradCheckpointing, nn.Module):
    """`num_layers` × (deformable layer per frame, window layer across the clip); checkpoint prefix `encoder.`.
    `set_grad_checkpointing()` checkpoints each of these layers."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int, num_levels: int = 3,
                 backend: str = "auto") -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(dim, num_heads, ffn_dim, num_levels, backend) for _ in range(num_layers)
        )
        self.temporal_layers = nn.ModuleList(
            WindowAttentionLayer(dim, num_heads, ffn_dim, backend) for _ in range(num_layers)
        )

    def forward(self, src: Tensor, pos_2d: Tensor, pos_3d: Tensor, level_shapes: Sequence[tuple[int, int]],
                batch: int) -> Tensor:
        """
        src:    (B·T, S, C) tokens of every frame
        pos_2d: (S, C) per-frame position embedding (+ level embedding) for the deformable layers
        pos_3d: (T, S, C) space-time position embedding (+ 3D level embedding) for the window layers
        returns (B·T, S, C)
        """
        frames = src.shape[0] // batch
        device = src.device
        spatial_shapes = torch.tensor(level_shapes, dtype=torch.int64, device=device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        reference_points = torch.cat([_pixel_centres(h, w, device) for h, w in level_shapes])
        order, inverse = window_orders(window_token_index(level_shapes, device), frames)
        window_pos = to_windows(pos_3d[None], order).repeat(batch, 1, 1)
        for layer, temporal_layer in zip(self.layers, self.temporal_layers):
            src = self.run_layer(layer, src, pos_2d, reference_points, spatial_shapes, level_start_index)
            windows = self.run_layer(temporal_layer, to_windows(src.view(batch, frames, *src.shape[1:]), order),
                                     window_pos)
            src = from_windows(windows, inverse).flatten(0, 1)
        return src


def _pixel_centres(height: int, width: int, device: torch.device) -> Tensor:
    """(H·W, 2) normalised (x, y) centres of an H×W grid, row-major."""
    y = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
    x = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack((grid_x.flatten(), grid_y.flatten()), -1)


class DeformableTemporalTransformer(nn.Module):
    """Holds the encoder and the level embeddings (checkpoint prefix `transformer.`)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int, num_levels: int = 3,
                 backend: str = "auto") -> None:
        super().__init__()
        self.encoder = DeformableTemporalEncoder(dim, num_heads, ffn_dim, num_layers, num_levels, backend)
        self.level_embed = nn.Parameter(torch.empty(num_levels, dim))
        self.level_embed_3d = nn.Parameter(torch.empty(num_levels, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)
        nn.init.normal_(self.level_embed_3d)

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay (SPEC §5.4)."""
        return {"level_embed", "level_embed_3d"}

    def forward(self, srcs: Sequence[Tensor], batch: int) -> list[Tensor]:
        """srcs: per level (B·T, C, h_l, w_l), coarse to fine -> the encoded levels, same shapes."""
        frames = srcs[0].shape[0] // batch
        level_shapes = [(x.shape[-2], x.shape[-1]) for x in srcs]
        device = srcs[0].device
        pos_2d, pos_3d = [], []
        for level, (h, w) in enumerate(level_shapes):
            dim = self.level_embed.shape[1]
            pos = sine_embedding_2d(h, w, num_feats=dim // 2, normalize=True, device=device)
            pos_2d.append(pos.flatten(1).t() + self.level_embed[level])
            pos = sine_embedding_3d(frames, h, w, num_feats=dim // 2, normalize=True, device=device)
            pos_3d.append(pos.flatten(2).permute(1, 2, 0) + self.level_embed_3d[level])
        src = torch.cat([x.flatten(2).transpose(1, 2) for x in srcs], 1)
        out = self.encoder(src, torch.cat(pos_2d, 0), torch.cat(pos_3d, 1), level_shapes, batch)
        sizes = [h * w for h, w in level_shapes]
        return [
            y.transpose(1, 2).reshape(y.shape[0], -1, h, w) for y, (h, w) in zip(out.split(sizes, 1), level_shapes)
        ]


class ConvNorm(nn.Conv2d):
    """Bias-free convolution, GroupNorm(32) and an optional ReLU; the norm sits at `.norm` as in detectron2's
    `Conv2d`, which is where the checkpoints keep it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(32, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.weight, a=1)  # detectron2's c2_xavier_fill

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class TemporalNeck(nn.Module):
    """The whole neck (checkpoint prefix `backbone.fpn.`).

    Args:
        in_channels: channels of the backbone maps "res2".."res5".
        dim: width C of every output (256).
        num_heads, ffn_dim, num_layers: of the encoder (8, 1024, 6).
        backend: kernel choice for the deformable and window attention.
    """

    def __init__(self, in_channels: Mapping[str, int], dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024,
                 num_layers: int = 6, backend: str = "auto") -> None:
        super().__init__()
        missing = {"res2", "res3", "res4", "res5"} - set(in_channels)
        if missing:
            raise ValueError(f"TemporalNeck: in_channels lacks {sorted(missing)}")
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], dim, kernel_size=1), nn.GroupNorm(32, dim))
            for name in ENCODER_FEATURES
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)
        self.transformer = DeformableTemporalTransformer(dim, num_heads, ffn_dim, num_layers, len(ENCODER_FEATURES),
                                                         backend)
        self.adapter_1 = ConvNorm(in_channels["res2"], dim, kernel_size=1)
        self.layer_1 = ConvNorm(dim, dim, kernel_size=3, relu=True)
        self.mask_features = nn.Conv2d(dim, dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: Mapping[str, Tensor], batch: int) -> list[Tensor]:
        """
        features: "res2".."res5", each (B·T, C_l, h_l, w_l) with frames of a clip consecutive
        returns   [F32, F16, F8, M4], each (B, C, T, h, w). F32..F8 are views of the encoder's token-major
                  output ((B, T, h, w, C) in memory, what the decoder reads as keys), M4 is contiguous.
        """
        srcs = [proj(features[name]) for proj, name in zip(self.input_proj, ENCODER_FEATURES)]
        encoded = self.transformer(srcs, batch)
        fine = self.adapter_1(features["res2"])
        # The encoder's maps are channels-last in memory: upsampled as they are, the sum with `fine` would mix
        # two layouts, which costs three times what making the 1/8 map contiguous first does.
        coarse = F.interpolate(encoded[-1].contiguous(), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        mask_features = self.mask_features(self.layer_1(fine + coarse))
        levels = [x.unflatten(0, (batch, -1)).transpose(1, 2) for x in encoded]
        # The decoder multiplies the mask features by every query's embedding as one (C, T·h·w) matrix per clip.
        mask_features = mask_features.unflatten(0, (batch, -1)).transpose(1, 2).contiguous()
        return [*levels, mask_features]
