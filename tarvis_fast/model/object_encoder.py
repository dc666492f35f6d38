"""The VOS/PET object encoder (SPEC §2.5): object queries from reference masks and points.

- A mask object is cut into q sub-masks (its pixels in row-major (t, y, x) order, in q contiguous runs); each
  sub-mask gives one query, initialised with the mean of the 1/4-resolution mask features under it.
- The background gives 16 queries: a 4×4 grid over the padded image, minus every object, in the reference
  frames.
- A point object (PET) gives one query: an MLP over the four feature maps sampled at the point; its four
  samples, projected, are the points it attends to.
- Four post-norm layers of (self-attention among all queries of a clip, cross-attention of every query to
  its own points only, FFN) refine the initial queries.

Parameter names follow the original's checkpoints (`vos_query_extractor.*`, SPEC §8).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.kernels import MultiheadAttention
from tarvis_fast.model.position import sine_embedding_2d

MASK_STRIDE = 4  # reference masks are at image resolution, the mask features at 1/4 of it


@dataclass
class ObjectReferences:
    """The objects a VOS/PET forward call segments: given by masks, by points, or both ("mixed").

    masks:        (B, N_mask, T_ref, H, W) bool: each object's mask in the reference frames `mask_frames`, at
                  the input image size (padded with zeros by the model) or already at the padded size. An
                  object may be empty in some of these frames, not in all.
    mask_frames:  (T_ref,) int64, increasing clip-local frame indices (0 <= t < T) of those frames. The 16
                  background queries are drawn from the same frames.
    points:       (B, N_point, 2) float (y, x) in [0, 1] relative to the input image before padding: pixel
                  (row i, column j) of an H×W image is ((i + 0.5) / H, (j + 0.5) / W).
    point_frames: (B, N_point) int64 clip-local frame of each point.
    queries_per_mask_object: queries per mask object; None for the model's default, 4 in training and 8 in
                  eval mode (SPEC §2.4). A point object always gets one query.
    generator:    random source for subsampling large masks in training (eval mode subsamples evenly).

    Without masks, the background queries come from the frames the points are in. Objects come out in
    this order: the mask objects (as in `masks`), then the point objects (as in `points`).
    """

    masks: Tensor | None = None
    mask_frames: Tensor | None = None
    points: Tensor | None = None
    point_frames: Tensor | None = None
    queries_per_mask_object: int | None = None
    generator: torch.Generator | None = None

    @property
    def num_mask_objects(self) -> int:
        return 0 if self.masks is None else self.masks.shape[1]

    @property
    def num_point_objects(self) -> int:
        return 0 if self.points is None else self.points.shape[1]

    @property
    def num_objects(self) -> int:
        return self.num_mask_objects + self.num_point_objects

    def validate(self, batch: int, frames: int, image_size: tuple[int, int], padded_size: tuple[int, int]) -> None:
        """Raise ValueError naming the field when the references do not fit a (B, T, 3, H, W) clip."""
        if self.masks is None and self.points is None:
            raise ValueError("ObjectReferences: give masks, points or both")
        if self.queries_per_mask_object is not None and self.queries_per_mask_object < 1:
            raise ValueError(f"ObjectReferences.queries_per_mask_object must be >= 1, got {self.queries_per_mask_object}")
        if self.masks is not None:
            self._validate_masks(batch, frames, image_size, padded_size)
        elif self.mask_frames is not None:
            raise ValueError("ObjectReferences.mask_frames given without masks")
        if self.points is not None:
            self._validate_points(batch, frames)
        elif self.point_frames is not None:
            raise ValueError("ObjectReferences.point_frames given without points")

    def _validate_masks(self, batch: int, frames: int, image_size: tuple[int, int],
                        padded_size: tuple[int, int]) -> None:
        masks, mask_frames = self.masks, self.mask_frames
        if masks.dtype != torch.bool or masks.dim() != 5:
            raise ValueError(f"ObjectReferences.masks must be a bool (B, N, T_ref, H, W) tensor, got {masks.dtype} "
                             f"{tuple(masks.shape)}")
        if masks.shape[0] != batch:
            raise ValueError(f"ObjectReferences.masks has batch {masks.shape[0]}, the images {batch}")
        if tuple(masks.shape[-2:]) not in (image_size, padded_size):
            raise ValueError(f"ObjectReferences.masks are {tuple(masks.shape[-2:])}; expected the image size "
                             f"{image_size} or the padded size {padded_size}")
        if mask_frames is None or mask_frames.dtype != torch.int64 or mask_frames.shape != (masks.shape[2],):
            raise ValueError(f"ObjectReferences.mask_frames must be int64 ({masks.shape[2]},), one per mask frame; "
                             f"got {None if mask_frames is None else (mask_frames.dtype, tuple(mask_frames.shape))}")
        if len(mask_frames) == 0:
            raise ValueError("ObjectReferences.mask_frames is empty")
        if mask_frames.min() < 0 or mask_frames.max() >= frames or (mask_frames.diff() <= 0).any():
            raise ValueError(f"ObjectReferences.mask_frames must increase within [0, {frames}), got "
                             f"{mask_frames.tolist()}")
        empty = ~masks.flatten(2).any(-1)
        if empty.any():
            b, n = empty.nonzero()[0].tolist()
            raise ValueError(f"ObjectReferences.masks: object {n} of batch element {b} is empty in every "
                             "reference frame")

    def _validate_points(self, batch: int, frames: int) -> None:
        points, point_frames = self.points, self.point_frames
        if not points.is_floating_point() or points.dim() != 3 or points.shape[0] != batch or points.shape[2] != 2:
            raise ValueError(f"ObjectReferences.points must be float ({batch}, N, 2), got {points.dtype} "
                             f"{tuple(points.shape)}")
        if ((points < 0) | (points > 1)).any():
            raise ValueError("ObjectReferences.points must be normalised (y, x) in [0, 1]")
        if point_frames is None or point_frames.dtype != torch.int64 or point_frames.shape != points.shape[:2]:
            raise ValueError(f"ObjectReferences.point_frames must be int64 {tuple(points.shape[:2])}, got "
                             f"{None if point_frames is None else (point_frames.dtype, tuple(point_frames.shape))}")
        if point_frames.numel() and (point_frames.min() < 0 or point_frames.max() >= frames):
            raise ValueError(f"ObjectReferences.point_frames must lie in [0, {frames}), got {point_frames.tolist()}")


@dataclass
class EncodedObjects:
    """The object encoder's queries for one call.

    background: (B, G, C) background queries (G = 16 for a 4×4 grid)
    objects:    (B, Q_obj, C) object queries: each mask object's queries back to back, then the point objects'
    queries_per_object: how many of `objects`' queries belong to each object, in order
    """

    background: Tensor
    objects: Tensor
    queries_per_object: list[int]


# ------------------------------------------------------------------------------------------------------------
# Points of masks (no learning here)


def grid_cells(height: int, width: int, grid: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """(H, W) int64 cell of a rows×cols grid each pixel belongs to, row-major cell numbers.

    Cell borders are where `linspace(-0.499, n - 0.501, size)` rounds to the next integer, as in HODOR.
    """
    rows, cols = grid
    y = torch.linspace(-0.499, rows - 1 + 0.499, height, device=device).round().long()
    x = torch.linspace(-0.499, cols - 1 + 0.499, width, device=device).round().long()
    return y[:, None] * cols + x[None, :]


def background_point_sets(masks: Tensor, grid: tuple[int, int]) -> list[Tensor]:
    """Pixels of each grid cell that no object covers: one (P_g, 3) int64 (t, y, x) tensor per cell, row-major.

    masks: (N, T, H, W) bool objects (N may be 0). A cell fully covered by objects gives an empty set.
    """
    _, t, h, w = masks.shape
    free = ~masks.any(0) if masks.shape[0] else torch.ones(t, h, w, dtype=torch.bool, device=masks.device)
    coords = free.nonzero()  # (P, 3), row-major
    cells = grid_cells(h, w, grid, masks.device)[coords[:, 1], coords[:, 2]]
    order = cells.argsort(stable=True)
    counts = torch.bincount(cells, minlength=grid[0] * grid[1])
    return list(coords[order].split(counts.tolist()))


def split_object_points(mask: Tensor, parts: int) -> list[Tensor]:
    """An object's pixels (row-major (t, y, x)) cut into `parts` contiguous runs: `parts` (P_i, 3) tensors.

    mask: (T, H, W) bool, not empty. With fewer pixels than parts the pixel list is repeated (cyclically) until
    it is long enough, so every run has at least one pixel.
    """
    coords = mask.nonzero()
    if coords.shape[0] == 0:
        raise ValueError("split_object_points: the mask is empty")
    if coords.shape[0] < parts:
        coords = coords.repeat(math.ceil(parts / coords.shape[0]), 1)
    return list(coords.tensor_split(parts))


def subsample(points: Tensor, limit: int, generator: torch.Generator | None, randomly: bool) -> Tensor:
    """At most `limit` of points (P, k): a random subset (training), or evenly spaced ones (inference)."""
    total = points.shape[0]
    if total <= limit:
        return points
    if randomly:
        keep = torch.randperm(total, generator=generator)[:limit].to(points.device)
    else:
        keep = torch.arange(limit, device=points.device) * total // limit
    return points[keep]


# ------------------------------------------------------------------------------------------------------------
# Layers


class PointSetAttention(nn.Module):
    """Multi-head attention in which query i attends only to its own set of keys, sets stored back to back.

    The same as `nn.MultiheadAttention` with one query per set, the sets padded and a key padding mask, but
    without the padding (sets range from 4 points to 16k). Parameter names are nn.MultiheadAttention's.
    A point may stand for several identical points of its set (`multiplicity`): the result is that of the
    set with the point repeated, for a fraction of the projections.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"PointSetAttention: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, set_index: Tensor,
                multiplicity: Tensor | None = None) -> Tensor:
        """
        query:        (N, C), one per set
        key/value:    (P, C) the points of all sets
        set_index:    (P,) int64 set of each point; every set in [0, N) must have a point
        multiplicity: (P,) how many identical points each one stands for; None for one each
        returns       (N, C)
        """
        n, c = query.shape
        m = self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).view(n, m, c // m) * (c // m) ** -0.5
        k = F.linear(key, w_k, b_k).view(-1, m, c // m)
        v = F.linear(value, w_v, b_v).view(-1, m, c // m)
        # A softmax per set and head, in float32 at least (sets hold up to 16k points).
        dtype = torch.promote_types(q.dtype, torch.float32)
        scores = (q[set_index] * k).sum(-1).to(dtype)  # (P, M)
        index = set_index[:, None].expand(-1, m)
        peak = scores.new_full((n, m), -math.inf).scatter_reduce(0, index, scores.detach(), "amax")
        weights = (scores - peak[set_index]).exp()
        if multiplicity is not None:
            weights = weights * multiplicity[:, None].to(dtype)
        weights = weights / weights.new_zeros(n, m).index_add(0, set_index, weights)[set_index]
        out = weights.new_zeros(n, m, c // m).index_add(0, set_index, weights[..., None] * v.to(dtype))
        return self.out_proj(out.view(n, c).to(query.dtype))


class _SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among a clip's object queries (q = k = x + embed, v = x); checkpoint names
    `attn`, `norm`."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, embed: Tensor) -> Tensor:
        qk = x + embed
        return self.norm(x + self.attn(qk, qk, x))


class _CrossAttentionLayer(nn.Module):
    """Post-norm attention of every query to its own points (q = x + embed; keys carry their positions)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = PointSetAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, embed: Tensor, keys: Tensor, values: Tensor, set_index: Tensor,
                multiplicity: Tensor) -> Tensor:
        return self.norm(x + self.attn(x + embed, keys, values, set_index, multiplicity))


class _FFNLayer(nn.Module):
    """Post-norm FFN; checkpoint names `mlp.0`, `mlp.2`, `norm`."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.mlp(x))


class PointQueryInitializer(nn.Module):
    """The PET query initialisation: an MLP over the concatenated samples of the four feature maps."""

    def __init__(self, dim: int, num_maps: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim * num_maps, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)
        )

    def forward(self, samples: Tensor) -> Tensor:
        """samples (..., num_maps · C) -> (..., C)"""
        return self.layers(samples)


# ------------------------------------------------------------------------------------------------------------
# The encoder


class ObjectEncoder(nn.Module):
    """Object and background queries for VOS/PET (checkpoint prefix `vos_query_extractor.`).

    Args:
        dim: query width C.
        num_heads, num_layers, ffn_dim: of the refinement layers (8, 4, 2048).
        bg_grid_size: (rows, cols) of the background grid; one query per cell. It is also the buffer
            `bg_grid_size` of the checkpoints, and a loaded checkpoint's value takes effect.
        max_points_per_mask: (training, inference) cap on the points one (sub-)mask contributes.
    """

    def __init__(self, dim: int = 256, num_heads: int = 8, num_layers: int = 4, ffn_dim: int = 2048,
                 bg_grid_size: tuple[int, int] = (4, 4), max_points_per_mask: tuple[int, int] = (2048, 16384)) -> None:
        super().__init__()
        self.max_points_per_mask = max_points_per_mask
        self.cross_attn_layers = nn.ModuleList(_CrossAttentionLayer(dim, num_heads) for _ in range(num_layers))
        self.self_attn_layers = nn.ModuleList(_SelfAttentionLayer(dim, num_heads) for _ in range(num_layers))
        self.ffn_layers = nn.ModuleList(_FFNLayer(dim, ffn_dim) for _ in range(num_layers))
        self.proj_point_features = nn.ModuleList(nn.Linear(dim, dim) for _ in range(4))
        self.point_vos_query_extractor = PointQueryInitializer(dim)
        self.mask_object_query_embed = nn.Parameter(torch.empty(dim))
        self.bg_query_embed = nn.Parameter(torch.empty(dim))
        self.point_object_query_embed = nn.Parameter(torch.empty(dim))
        self.register_buffer("bg_grid_size", torch.tensor(bg_grid_size, dtype=torch.int64))
        self.grid = tuple(bg_grid_size)
        self.register_load_state_dict_post_hook(_read_grid_size)
        for layers in (self.cross_attn_layers, self.self_attn_layers, self.ffn_layers):
            for param in layers.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)
        for embed in (self.mask_object_query_embed, self.bg_query_embed, self.point_object_query_embed):
            nn.init.normal_(embed)

    @property
    def num_background_queries(self) -> int:
        return self.grid[0] * self.grid[1]

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay (SPEC §5.4): the three query embeddings."""
        return {"mask_object_query_embed", "bg_query_embed", "point_object_query_embed"}

    def forward(self, pyramid: Sequence[Tensor], *, mask_frames: Tensor, masks: Tensor | None = None,
                points: Tensor | None = None, point_frames: Tensor | None = None, queries_per_mask_object: int,
                generator: torch.Generator | None = None) -> EncodedObjects:
        """
        pyramid:      [F32, F16, F8, M4], each (B, C, T, h, w)
        mask_frames:  (T_ref,) clip frames of the masks and of the background queries
        masks:        (B, N_mask, T_ref, 4·h4, 4·w4) bool at the padded image size, or None
        points:       (B, N_point, 2) (y, x) in [0, 1] of the padded image, or None
        point_frames: (B, N_point) frame of each point
        """
        mask_features = pyramid[-1]
        b, c, _, h4, w4 = mask_features.shape
        if masks is None:
            masks = mask_features.new_zeros(b, 0, len(mask_frames), h4 * MASK_STRIDE, w4 * MASK_STRIDE,
                                            dtype=torch.bool)
        parts = [self._mask_queries(mask_features, masks, mask_frames, queries_per_mask_object, generator)]
        if points is not None and points.shape[1]:
            parts.append(self._point_queries(pyramid, points, point_frames))
        inits = torch.cat([part.inits for part in parts], 1)  # (B, Q, C)
        embeds = torch.cat([part.embeds for part in parts], 1)
        q = inits.shape[1]
        keys = torch.cat([part.keys for part in parts])
        values = torch.cat([part.values for part in parts])
        multiplicity = torch.cat([part.multiplicity for part in parts])
        # Index of each point's query among the flattened (B·Q) queries.
        offsets = [0, parts[0].inits.shape[1]]
        set_index = torch.cat([part.batch * q + offset + part.query for part, offset in zip(parts, offsets)])

        x = inits
        for self_attn, cross_attn, ffn in zip(self.self_attn_layers, self.cross_attn_layers, self.ffn_layers):
            x = self_attn(x, embeds)
            x = cross_attn(x.flatten(0, 1), embeds.flatten(0, 1), keys, values, set_index, multiplicity).view(b, q, c)
            x = ffn(x)

        g = self.num_background_queries
        num_points = points.shape[1] if points is not None else 0
        counts = [queries_per_mask_object] * masks.shape[1] + [1] * num_points
        return EncodedObjects(background=x[:, :g], objects=x[:, g:], queries_per_object=counts)

    def _mask_queries(self, mask_features: Tensor, masks: Tensor, mask_frames: Tensor, parts_per_object: int,
                      generator: torch.Generator | None) -> _QueryPart:
        """Background and sub-mask queries: their initial content is the mean of the mask features at their
        points, and their points are those features (+ the unnormalised 2D position embedding).

        The points are pixels of the padded image and the features are at 1/4 of its size, so up to 16 points of
        a set share one feature cell: they become one point with that multiplicity (16x fewer projections in
        the cross-attention layers, and 16x less memory, at inference). The features are sampled without
        gradient, as in the original (`backprop_through_fmap=False`).
        """
        b, c, _, h, w = mask_features.shape
        with torch.no_grad():
            # At least float32: the mean runs over up to 16k points (float64 stays float64).
            volume = mask_features[:, :, mask_frames]  # (B, C, T_ref, h, w)
            volume = volume.to(torch.promote_types(volume.dtype, torch.float32))
            t_ref = volume.shape[2]
            # One table row per feature-volume cell, and a last, zero row for the point of an empty set.
            feature_table = torch.cat([volume.permute(0, 2, 3, 4, 1).reshape(-1, c), volume.new_zeros(1, c)])
            pos = sine_embedding_2d(h, w, num_feats=c // 2, normalize=False, device=volume.device)
            pos_table = torch.cat([pos.flatten(1).t(), pos.new_zeros(1, c)])
            limit = self.max_points_per_mask[0 if self.training else 1]
            feature_rows, pos_rows, set_sizes = [], [], []
            for i in range(b):
                sets = background_point_sets(masks[i], self.grid)
                for mask in masks[i]:
                    sets += split_object_points(mask, parts_per_object)
                for coords in sets:
                    coords = subsample(coords, limit, generator, randomly=self.training)
                    if coords.shape[0] == 0:
                        feature_rows.append(coords.new_full((1,), feature_table.shape[0] - 1))
                        pos_rows.append(coords.new_full((1,), pos_table.shape[0] - 1))
                    else:
                        t, y, x = coords.unbind(1)
                        cell = (y // MASK_STRIDE) * w + x // MASK_STRIDE
                        feature_rows.append((i * t_ref + t) * h * w + cell)
                        pos_rows.append(cell)
                    set_sizes.append(feature_rows[-1].shape[0])
            num_sets = len(set_sizes) // b
            sizes = torch.tensor(set_sizes, device=volume.device)
            flat_set = torch.arange(len(set_sizes), device=volume.device).repeat_interleave(sizes)
            # A point's position row follows from its feature row, so (set, feature row) identifies it.
            rows, num_rows = torch.cat(feature_rows), feature_table.shape[0]
            position_of_row = rows.new_zeros(num_rows).scatter_(0, rows, torch.cat(pos_rows))
            point_ids, multiplicity = torch.unique(flat_set * num_rows + rows, return_counts=True)
            flat_set, rows = point_ids.div(num_rows, rounding_mode="floor"), point_ids % num_rows
            features = feature_table[rows]
            keys = features + pos_table[position_of_row[rows]]
            inits = features.new_zeros(len(set_sizes), c).index_add(0, flat_set, features * multiplicity[:, None])
            inits = inits / sizes[:, None]
        g = self.num_background_queries
        embeds = torch.cat([self.bg_query_embed.expand(g, c),
                            self.mask_object_query_embed.expand(num_sets - g, c)]).expand(b, num_sets, c)
        return _QueryPart(inits.view(b, num_sets, c), embeds, keys, features, batch=flat_set // num_sets,
                          query=flat_set % num_sets, multiplicity=multiplicity)

    def _point_queries(self, pyramid: Sequence[Tensor], points: Tensor, point_frames: Tensor) -> _QueryPart:
        """PET queries: content from the MLP over the four maps' samples at the point, and four points to
        attend to (each map's sample, projected, + the point's unnormalised 2D position embedding)."""
        b, n, _ = points.shape
        samples = [_sample_nearest(level, points, point_frames) for level in pyramid]  # each (B, N, C)
        inits = self.point_vos_query_extractor(torch.cat(samples, -1))
        values = torch.stack([proj(x) for proj, x in zip(self.proj_point_features, samples)], 2)  # (B, N, 4, C)
        c, h4, w4 = values.shape[-1], pyramid[-1].shape[-2], pyramid[-1].shape[-1]
        pos = sine_embedding_2d(h4, w4, num_feats=c // 2, normalize=False, device=points.device)
        rows, cols = _nearest_cell(points, h4, w4)
        keys = values + pos[:, rows, cols].permute(1, 2, 0)[:, :, None]
        per_set = values.shape[2]
        batch = torch.arange(b, device=points.device).repeat_interleave(n * per_set)
        query = torch.arange(n, device=points.device).repeat_interleave(per_set).repeat(b)
        embeds = self.point_object_query_embed.expand(b, n, c)
        return _QueryPart(inits, embeds, keys.reshape(-1, c), values.reshape(-1, c), batch, query,
                          multiplicity=torch.ones_like(query))


class _QueryPart(NamedTuple):
    """Queries of one kind (mask-derived or point-derived) and the points they attend to.

    inits, embeds: (B, Q_part, C); keys, values: (P, C); batch, query: (P,) the batch element and the query
    (within this part) each point belongs to; multiplicity: (P,) how many identical points each one stands for.
    """

    inits: Tensor
    embeds: Tensor
    keys: Tensor
    values: Tensor
    batch: Tensor
    query: Tensor
    multiplicity: Tensor


def _nearest_cell(points: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Row and column of the cell nearest to normalised (y, x) points on an H×W map, as `grid_sample(
    mode="nearest", align_corners=False)` picks it (a point on the far edge takes the last cell)."""
    rows = (points[..., 0].float() * height - 0.5).round().long().clamp(0, height - 1)
    cols = (points[..., 1].float() * width - 0.5).round().long().clamp(0, width - 1)
    return rows, cols


def _sample_nearest(level: Tensor, points: Tensor, frames: Tensor) -> Tensor:
    """level (B, C, T, h, w) at each point's frame and nearest cell -> (B, N, C)."""
    rows, cols = _nearest_cell(points, level.shape[-2], level.shape[-1])
    batch = torch.arange(level.shape[0], device=level.device)[:, None].expand_as(rows)
    return level[batch, :, frames, rows, cols]


def _read_grid_size(module: nn.Module, incompatible_keys: object) -> None:
    """After loading a checkpoint, use its background grid (the original reads the buffer at run time)."""
    if module.bg_grid_size.device.type != "meta":
        rows, cols = module.bg_grid_size.tolist()
        if rows < 1 or cols < 1:
            raise ValueError(f"vos_query_extractor.bg_grid_size must be positive, got {[rows, cols]}")
        module.grid = (rows, cols)
