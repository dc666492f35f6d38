"""The masked-attention transformer decoder and its prediction heads (SPEC §2.6, §2.7).

Queries attend to the 1/32, 1/16 and 1/8 maps of the whole clip in turn (level i % 3 at layer i), each
query only to the space-time positions its previous mask prediction covers. A prediction is made from the
initial queries and after every layer: `num_layers + 1` predictions in all.

Parameter names follow the original's checkpoints (`decoder.*`, SPEC §8).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.kernels import MultiheadAttention
from tarvis_fast.model.grad_checkpointing import GradCheckpointing
from tarvis_fast.model.position import sine_embedding_3d
from tarvis_fast.model.queries import QUERY_GROUPS, QuerySet

_CLASS_GROUPS = ("instance", "background", "semantic")  # the groups whose dot products give class logits


class DecoderPrediction(NamedTuple):
    """One prediction of the decoder.

    mask_logits:  (B, Q, T, H/4, W/4), one map per query of the query set, in its order
    class_logits: (B, Q_instance, 1 + C) with the background logit first, when the query set has instance,
                  background and semantic groups (VIS, VPS); None otherwise (VOS)
    """

    mask_logits: Tensor
    class_logits: Tensor | None


def _xavier_matrices(module: nn.Module) -> None:
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)


class SelfAttentionBlock(nn.Module):
    """Post-norm self-attention among the queries: q = k = x + embed, v = x."""

    def __init__(self, dim: int, num_heads: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, queries: Tensor, embeds: Tensor) -> Tensor:
        qk = queries + embeds
        return self.norm(queries + self.self_attn(qk, qk, queries, backend=self.backend))


class HardMaskedAttention(nn.Module):
    """Cross-attention that blocks, for each query, the keys where its mask logit is negative (sigmoid < 0.5);
    a query with every key blocked attends to all. The attention sits at `._attn`, the original's key."""

    def __init__(self, dim: int, num_heads: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self._attn = MultiheadAttention(dim, num_heads)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask_logits: Tensor) -> Tensor:
        """query (B, Q, C), key/value (B, N, C), mask_logits (B, Q, N) -> (B, Q, C)"""
        return self._attn(query, key, value, mask_logits=mask_logits, backend=self.backend)


class CrossAttentionBlock(nn.Module):
    """Post-norm masked cross-attention: q = x + embed, k = features + pos, v = features."""

    def __init__(self, dim: int, num_heads: int, backend: str) -> None:
        super().__init__()
        self.multihead_attn = HardMaskedAttention(dim, num_heads, backend)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, queries: Tensor, embeds: Tensor, keys: Tensor, values: Tensor, mask_logits: Tensor) -> Tensor:
        return self.norm(queries + self.multihead_attn(queries + embeds, keys, values, mask_logits))


class FFNBlock(nn.Module):
    """Post-norm feed-forward: norm(x + W2 relu(W1 x))."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """`num_layers` Linear layers of width `dim` with ReLU between them (at `.layers.{i}`)."""

    def __init__(self, dim: int, num_layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedAttentionDecoder(GradCheckpointing, nn.Module):
    """The decoder (checkpoint prefix `decoder.`). `set_grad_checkpointing()` checkpoints each layer (cross-
    attention, self-attention and FFN together); the prediction heads between layers run as usual.

    Args:
        dim: query and feature width C (256).
        num_heads, ffn_dim, num_layers: 8, 2048, 9.
        num_levels: feature levels visited in turn (3: 1/32, 1/16, 1/8).
        backend: kernel choice for the attention layers.
    """

    def __init__(self, dim: int = 256, num_heads: int = 8, ffn_dim: int = 2048, num_layers: int = 9,
                 num_levels: int = 3, backend: str = "auto") -> None:
        super().__init__()
        self.num_levels = num_levels
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionBlock(dim, num_heads, backend) for _ in range(num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionBlock(dim, num_heads, backend) for _ in range(num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(FFNBlock(dim, ffn_dim) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.scale_embed = nn.Embedding(num_levels, dim)
        # One mask-embedding MLP per query group ("free" is never used) and one projection per group for the
        # class dot products (only instance, background and semantic are used).
        self.mask_embeds = nn.ModuleDict({group: MLP(dim) for group in QUERY_GROUPS})
        self.proj_layers = nn.ModuleDict({group: nn.Linear(dim, dim) for group in QUERY_GROUPS if group != "free"})

    @property
    def num_layers(self) -> int:
        return len(self.transformer_ffn_layers)

    def forward(self, levels: Sequence[Tensor], mask_features: Tensor, queries: QuerySet, *,
                all_layers: bool = True) -> list[DecoderPrediction]:
        """
        levels:        the 1/32, 1/16, 1/8 maps, each (B, C, T, h_l, w_l)
        mask_features: (B, C, T, H/4, W/4)
        queries:       the query set; its groups choose the heads
        all_layers:    return every prediction (training); otherwise only the final one (inference: the
                       intermediate masks are still computed, as attention masks, but not kept)
        returns        `num_layers + 1` predictions (or 1), first from the initial queries
        """
        if len(levels) != self.num_levels:
            raise ValueError(f"decoder: expected {self.num_levels} feature levels, got {len(levels)}")
        unknown = set(queries.names) - set(QUERY_GROUPS)
        if unknown:
            raise ValueError(f"decoder: unknown query groups {sorted(unknown)}; known: {QUERY_GROUPS}")
        keys, values, sizes = [], [], []
        for level, x in enumerate(levels):
            _, c, t, h, w = x.shape
            sizes.append((t, h, w))
            # Tokens (B, T·h·w, C) with the level embedding added, written in one pass: the neck's levels are
            # token-major in memory, so the sum comes out contiguous and the flatten is a view.
            feats = (x.permute(0, 2, 3, 4, 1) + self.scale_embed.weight[level]).flatten(1, 3)
            pos = sine_embedding_3d(t, h, w, num_feats=c // 2, normalize=True, device=x.device)
            values.append(feats)
            keys.append(feats + pos.flatten(1).t())

        x, embeds = queries.inits, queries.embeds
        prediction, attn_mask = self._predict(x, mask_features, queries, sizes[0])
        predictions = [prediction]
        for i in range(self.num_layers):
            level = i % self.num_levels
            x = self.run_layer(self._layer, i, x, embeds, keys[level], values[level], attn_mask)
            prediction, attn_mask = self._predict(x, mask_features, queries, sizes[(i + 1) % self.num_levels])
            if all_layers:
                predictions.append(prediction)
        return predictions if all_layers else [prediction]

    def _layer(self, i: int, x: Tensor, embeds: Tensor, keys: Tensor, values: Tensor, attn_mask: Tensor) -> Tensor:
        """Layer i on queries x (B, Q, C): masked cross-attention to keys/values (B, N, C), self-attention, FFN."""
        x = self.transformer_cross_attention_layers[i](x, embeds, keys, values, attn_mask)
        x = self.transformer_self_attention_layers[i](x, embeds)
        return self.transformer_ffn_layers[i](x)

    def _predict(self, x: Tensor, mask_features: Tensor, queries: QuerySet,
                 attn_size: tuple[int, int, int]) -> tuple[DecoderPrediction, Tensor]:
        """The heads on queries x (B, Q, C), and the next layer's attention mask logits (B, Q, T·h·w)."""
        x = self.decoder_norm(x)
        groups = dict(zip(queries.names, x.split(queries.counts, 1)))
        mask_embed = torch.cat([self.mask_embeds[name](groups[name]) for name in queries.names], 1)  # (B, Q, C)
        b, c, t, h, w = mask_features.shape
        mask_logits = torch.bmm(mask_embed, mask_features.reshape(b, c, t * h * w)).view(b, -1, t, h, w)

        class_logits = None
        if all(name in groups for name in _CLASS_GROUPS):
            instance = self.proj_layers["instance"](groups["instance"])
            background = self.proj_layers["background"](groups["background"])
            semantic = self.proj_layers["semantic"](groups["semantic"])
            no_object = torch.bmm(instance, background.transpose(1, 2)).amax(-1, keepdim=True)
            class_logits = torch.cat((no_object, torch.bmm(instance, semantic.transpose(1, 2))), -1)

        # No gradient flows through the attention masks.
        attn_mask = F.interpolate(mask_logits.detach(), size=attn_size, mode="trilinear", align_corners=False)
        return DecoderPrediction(mask_logits, class_logits), attn_mask.flatten(2)
