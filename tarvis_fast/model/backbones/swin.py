"""Swin Transformer backbone as Mask2Former's `D2SwinTransformer` (used by TarViS) computes it.

The behaviour that matters for the released weights, kept here:
- any input size: the image is zero-padded to a multiple of the patch size, every block zero-pads its (normalised)
  tokens to a multiple of the window size, and patch merging zero-pads odd sizes. Padded tokens are *not* masked in
  attention; they take part as keys and values, as in the original.
- shifted windows (odd blocks) roll the map by ⌊window/2⌋ and mask attention between tokens from different regions of
  the rolled map with -100 (not -inf), the original's value.
- a LayerNorm per output stage (`norm0`..`norm3`), no absolute position embedding, no dropout.

Regular and shifted blocks run the same code: which tokens form a window, and the mask, are data (`WindowLayout`),
built once per map size by the stage, rather than a branch on the block's shift. So blocks of one stage have one
graph under torch.compile (`tarvis_fast.model.compile`), which halves the backbone's compile time; a regular block
takes an all-zero mask, which adds nothing to its logits.

Tokens stay in (B, H, W, C) layout throughout; only the outputs are made (N, C, H, W)-contiguous.
State_dict keys follow the original (SPEC §8): `patch_embed.proj.weight`, `layers.0.blocks.1.attn.qkv.weight`,
`layers.2.downsample.reduction.weight`, `norm3.bias`, ...
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..grad_checkpointing import GradCheckpointing
from .layers import Backbone, DropPath, check_images

PATCH_SIZE = 4
MLP_RATIO = 4
SHIFTED_WINDOW_MASK_VALUE = -100.0


def window_partition(x: Tensor, window: int) -> Tensor:
    """Cut a map into non-overlapping windows: (B, H, W, C) -> (B·nW, window², C), H and W multiples of `window`.

    Windows are ordered image-major, then row-major within an image; tokens row-major within a window.
    """
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels).transpose(2, 3)
    return x.reshape(-1, window * window, channels)


def relative_position_index(window: int) -> Tensor:
    """(window², window²) int64: for tokens i, j of a window (row-major), the row of the relative position bias table
    holding their offset (dy, dx) = position_i - position_j, i.e. (dy + window - 1) * (2·window - 1) + dx + window - 1."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dy = rows[:, None] - rows[None, :] + window - 1
    dx = cols[:, None] - cols[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def _build_shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    def regions(length: int) -> Tensor:
        # After rolling by -shift, the last `shift` positions and the `window - shift` before them hold content from
        # different sides of the map: region 0 = the bulk, 1 = [length - window, length - shift), 2 = the last `shift`.
        position = torch.arange(length, device=device)
        return (position >= length - window).long() + (position >= length - shift).long()

    region_ids = regions(height)[:, None] * 3 + regions(width)[None, :]  # (height, width)
    region_ids = window_partition(region_ids[None, :, :, None], window).squeeze(-1)  # (nW, window²)
    same_region = region_ids[:, :, None] == region_ids[:, None, :]
    return torch.where(same_region, 0.0, SHIFTED_WINDOW_MASK_VALUE)


class WindowLayout(NamedTuple):
    """Where the windows of a (height, width) map lie (both multiples of the window), rolled by -shift.

    order: (height·width,) int64, for each window token in `window_partition` order (of the rolled map) its flat
        row-major position in the map: `tokens.flatten(1, 2).index_select(1, order)` cuts the rolled map into
        windows.
    inverse: (height·width,) int64, the inverse permutation: for each map position, its window token.
    mask: (nW, window², window²) additive attention mask, 0 where two tokens of a window may attend to each other
        and -100 where they come from different regions of the map before rolling; all 0 when shift is 0.
    """

    order: Tensor
    inverse: Tensor
    mask: Tensor


def _build_window_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    positions = torch.arange(height * width, device=device).view(1, height, width, 1)
    if shift:
        positions = torch.roll(positions, shifts=(-shift, -shift), dims=(1, 2))
    order = window_partition(positions, window).flatten()
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=device)
    if shift:
        mask = _build_shifted_window_mask(height, width, window, shift, device)
    else:  # materialised (not an expanded 0), so that it has the shifted mask's strides and both share one graph
        mask = torch.zeros(order.numel() // window**2, window**2, window**2, device=device)
    return WindowLayout(order, inverse, mask)


# A mask is (nW, N, N) floats, up to ~40 MB for a 768×1344 input: keep the last few sizes only.
@functools.lru_cache(maxsize=16)
def _cached_window_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    # Ordinary tensors even when first requested under inference_mode, so later training steps may use them.
    with torch.inference_mode(False), torch.no_grad():
        return _build_window_layout(height, width, window, shift, device)


def window_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    """The `WindowLayout` of a (height, width) map (multiples of `window`) rolled by -`shift` (0: regular windows).
    Computed once per size and device; inside torch.compile it is traced instead. Treat the result as read-only:
    it is shared."""
    if torch.compiler.is_compiling():
        return _build_window_layout(height, width, window, shift, device)
    return _cached_window_layout(height, width, window, shift, device)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per head and relative offset."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        # Persistent although derived: the released checkpoints hold it, and strict loading must match them.
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> Tensor:
        """(heads, window², window²) bias added to the attention logits of every window."""
        tokens = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)

    def forward(self, windows: Tensor, mask: Tensor) -> Tensor:
        """windows: (B·nW, N, C), N = window². mask: (nW, N, N) additive mask (`WindowLayout.mask`).
        Returns (B·nW, N, C)."""
        num_windows, tokens, dim = windows.shape
        qkv = self.qkv(windows).view(num_windows, tokens, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B·nW, heads, N, head_dim)
        # Each window of an image has its own bias: (nW, heads, N, N), repeated over the images. The fused SDPA
        # kernels take 4-D inputs only, so the batch and window dimensions are flattened together here.
        per_window = self.relative_position_bias()[None] + mask[:, None].to(self.relative_position_bias_table.dtype)
        bias = per_window.expand(num_windows // mask.shape[0], -1, -1, -1, -1).flatten(0, 1)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
        return self.proj(out.transpose(1, 2).reshape(num_windows, tokens, dim))


class Mlp(nn.Module):
    """Linear dim -> hidden_dim, GELU, Linear hidden_dim -> dim."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each on a residual branch with stochastic depth.

    Args:
        shift: 0 for regular windows, ⌊window/2⌋ for shifted windows: the `WindowLayout` its stage gives it.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, drop_path: float) -> None:
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift must be in [0, window={window}), got {shift}")
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, MLP_RATIO * dim)

    def forward(self, x: Tensor, layout: WindowLayout) -> Tensor:
        """x: (B, H, W, C) -> (B, H, W, C). layout: the `window_layout` of the padded size for this block's shift."""
        batch, height, width, channels = x.shape
        pad_bottom, pad_right = -height % self.window, -width % self.window
        y = F.pad(self.norm1(x), (0, 0, 0, pad_right, 0, pad_bottom)).flatten(1, 2)
        # index_select rather than y[:, order]: several times faster on CPU, forward and backward.
        y = self.attn(y.index_select(1, layout.order).view(-1, self.window**2, channels), layout.mask)
        y = y.view(batch, -1, channels).index_select(1, layout.inverse)
        y = y.view(batch, height + pad_bottom, width + pad_right, channels)
        x = x + self.drop_path(y[:, :height, :width])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Stride-2 downsampling: concatenate each 2×2 neighbourhood (order (0,0), (1,0), (0,1), (1,1) as (row, col)),
    LayerNorm, then a bias-free linear 4C -> 2C. Odd sizes are zero-padded at the bottom/right."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 2C)."""
        batch, height, width, channels = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        half_h, half_w = (height + 1) // 2, (width + 1) // 2
        # (B, H/2, row offset, W/2, col offset, C) -> (B, H/2, W/2, col offset, row offset, C): the channel blocks
        # come out in the order (0,0), (1,0), (0,1), (1,1).
        x = x.view(batch, half_h, 2, half_w, 2, channels).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(batch, half_h, half_w, 4 * channels)))


class SwinStage(GradCheckpointing, nn.Module):
    """`depth` blocks alternating regular and shifted windows, then (except in the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, self.shift if j % 2 else 0, drop_paths[j]) for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """x: (B, H, W, C) -> (stage output (B, H, W, C), input of the next stage (B, ⌈H/2⌉, ⌈W/2⌉, 2C) or None)."""
        _, height, width, _ = x.shape
        padded_h, padded_w = height + -height % self.window, width + -width % self.window
        layouts = {shift: window_layout(padded_h, padded_w, self.window, shift, x.device) for shift in (0, self.shift)}
        for block in self.blocks:
            x = self.run_layer(block, x, layouts[block.shift])
        return x, (self.downsample(x) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    """Non-overlapping 4×4 patches -> `dim` channels (a strided conv), then LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, 3, H, W) -> (N, ⌈H/4⌉, ⌈W/4⌉, dim), zero-padding H, W at the bottom/right to multiples of 4."""
        height, width = images.shape[-2:]
        images = F.pad(images, (0, -width % PATCH_SIZE, 0, -height % PATCH_SIZE))
        return self.norm(self.proj(images).permute(0, 2, 3, 1))


class SwinTransformer(Backbone):
    """Four-stage Swin Transformer returning res2..res5 (strides 4..32, channels embed_dim·(1, 2, 4, 8)).

    Args:
        embed_dim: channels of the first stage, doubled at each following stage.
        depths: blocks per stage, e.g. (2, 2, 6, 2) for Swin-T.
        num_heads: attention heads per stage, e.g. (3, 6, 12, 24).
        window: window side in tokens (7 or 12 for the released weights).
        drop_path_rate: stochastic depth of the last block; it rises linearly from 0 at the first block.
    """

    def __init__(self, embed_dim: int, depths: Sequence[int], num_heads: Sequence[int], window: int,
                 drop_path_rate: float) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"depths and num_heads must have 4 entries (res2..res5), got {depths} and {num_heads}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        total_blocks = sum(depths)
        # Plain floats rather than torch.linspace, so that the module can also be built on the meta device.
        drop_paths = [drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList()
        self.out_channels = {}
        for index, (name, depth, heads) in enumerate(zip(self.strides, depths, num_heads)):
            dim = embed_dim * 2**index
            first_block = sum(depths[:index])
            self.layers.append(SwinStage(dim, depth, heads, window, drop_paths[first_block:first_block + depth],
                                         downsample=index < 3))
            self.add_module(f"norm{index}", nn.LayerNorm(dim))  # keys norm0..norm3 as in the original
            self.out_channels[name] = dim
        self.apply(_init_linear)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: (N, 3, H, W) normalised -> {"res2": (N, C, ⌈H/4⌉, ⌈W/4⌉), ..., "res5": (N, 8C, ⌈H/32⌉, ⌈W/32⌉)}."""
        check_images(images)
        x = self.patch_embed(images)
        features = {}
        for index, (name, stage) in enumerate(zip(self.out_channels, self.layers)):
            stage_output, x = stage(x)
            features[name] = getattr(self, f"norm{index}")(stage_output).permute(0, 3, 1, 2).contiguous()
        return features


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_TIMM_DOWNSAMPLE_KEY = re.compile(r"layers\.(\d+)\.downsample\.")


def swin_state_dict_from_official(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """Extract this module's tensors from an ImageNet Swin checkpoint.

    Accepts Microsoft's release files (e.g. `swin_tiny_patch4_window7_224.pth`, `swin_large_patch4_window12_384_22k.pth`;
    the state dict under "model") or a bare state dict, in either the original layout (patch merging at the end of a
    stage, `layers.{0,1,2}.downsample`, as here) or timm's newer one (at the start of the next stage,
    `layers.{1,2,3}.downsample`, which is moved back). Dropped: the classifier (`head.*`), the final `norm.*` (this
    backbone has per-stage norms `norm0..3` instead; they keep their initialisation, as they did in TarViS, which
    loaded these files non-strictly) and the derived buffers (`attn_mask`, `relative_position_index`).
    """
    state_dict = checkpoint.get("model", checkpoint)
    timm_layout = any(key.startswith("layers.3.downsample.") for key in state_dict)
    renamed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(("head.", "norm.")) or key.endswith(("attn_mask", "relative_position_index")):
            continue
        if timm_layout:
            key = _TIMM_DOWNSAMPLE_KEY.sub(lambda match: f"layers.{int(match[1]) - 1}.downsample.", key)
        renamed[key] = value
    return renamed
