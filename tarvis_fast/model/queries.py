"""The learned query tables and the query set a forward call feeds to the decoder (SPEC §2.4).

Every table is one Parameter whose row 0 is the group's shared positional embedding (the "embed" of every
query of the group) and whose rows 1.. are per-query content initialisations ("inits"). VOS/PET inits come
from the object encoder instead, so their tables hold only the embed row that is used.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Every query group the decoder knows, in the original's order; "free" has a mask MLP but is never used.
QUERY_GROUPS: tuple[str, ...] = ("background", "semantic", "background_vos", "vos", "instance", "free")


@dataclass
class QuerySet:
    """The queries of one forward call, groups back to back along Q.

    inits:  (B, Q, C) content of each query (refined by the decoder)
    embeds: (B, Q, C) positional embedding of each query (constant through the decoder)
    groups: (name, count) per group, in order; the counts sum to Q
    """

    inits: Tensor
    embeds: Tensor
    groups: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if self.inits.shape != self.embeds.shape:
            raise ValueError(f"QuerySet: inits {tuple(self.inits.shape)} and embeds {tuple(self.embeds.shape)} differ")
        if sum(count for _, count in self.groups) != self.inits.shape[1]:
            raise ValueError(f"QuerySet: group counts {self.groups} do not sum to Q = {self.inits.shape[1]}")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.groups]

    @property
    def counts(self) -> list[int]:
        return [count for _, count in self.groups]

    @staticmethod
    def concat(parts: Sequence[tuple[str, Tensor, Tensor]]) -> QuerySet:
        """Build from (name, inits (B, Q_g, C), embeds (B, Q_g, C)) per group."""
        return QuerySet(
            inits=torch.cat([inits for _, inits, _ in parts], 1),
            embeds=torch.cat([embeds for _, _, embeds in parts], 1),
            groups=tuple((name, inits.shape[1]) for name, inits, _ in parts),
        )


def semantic_query_layout(num_classes: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Rows [start, end) of each dataset's semantic queries: datasets in alphabetical order from row 1.

    E.g. the fine-tuning datasets give CITYSCAPES_VPS (1, 20), KITTI_STEP (20, 39), OVIS (39, 64),
    VIPSEG (64, 188), YOUTUBE_VIS (188, 228).
    """
    layout = {}
    start = 1
    for name in sorted(num_classes):
        if num_classes[name] <= 0:
            raise ValueError(f"dataset {name!r} needs a positive number of semantic classes, got {num_classes[name]}")
        layout[name] = (start, start + num_classes[name])
        start += num_classes[name]
    return layout


class QueryEmbeddings(nn.Module):
    """The learned query tables (checkpoint prefix `embedding_container.`).

    Every table is trained without weight decay (`no_weight_decay`, SPEC §5.4).

    Args:
        semantic_classes: number of semantic classes of each VIS/VPS dataset the model was trained on.
        dim: query width C (256).
        num_instance_queries: instance queries (128 in the released models).
        num_background_queries: background queries for VIS/VPS (1).
    """

    def __init__(self, semantic_classes: Mapping[str, int], dim: int = 256, num_instance_queries: int = 128,
                 num_background_queries: int = 1) -> None:
        super().__init__()
        if num_instance_queries <= 0 or num_background_queries <= 0:
            raise ValueError("num_instance_queries and num_background_queries must be positive, got "
                             f"{num_instance_queries} and {num_background_queries}")
        self.semantic_slices = semantic_query_layout(semantic_classes)
        num_semantic = sum(end - start for start, end in self.semantic_slices.values())
        self._semantic_queries = nn.Parameter(torch.empty(1 + num_semantic, dim))
        self._background_queries = nn.Parameter(torch.empty(1 + num_background_queries, dim))
        # The original sizes this like the VIS/VPS background table but only ever uses row 0.
        self._background_vos_queries = nn.Parameter(torch.empty(1 + num_background_queries, dim))
        self._instance_queries = nn.Parameter(torch.empty(1 + num_instance_queries, dim))
        self._vos_queries = nn.Parameter(torch.empty(1, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for param in self.parameters():
            nn.init.normal_(param)

    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters()}

    @property
    def datasets(self) -> list[str]:
        return list(self.semantic_slices)

    def num_classes(self, dataset: str) -> int:
        start, end = self._slice(dataset)
        return end - start

    def _slice(self, dataset: str) -> tuple[int, int]:
        if dataset not in self.semantic_slices:
            raise KeyError(f"the model has no semantic queries for dataset {dataset!r}; "
                           f"it was trained with {sorted(self.semantic_slices)}")
        return self.semantic_slices[dataset]

    @staticmethod
    def _expand(table: Tensor, rows: slice, batch: int) -> tuple[Tensor, Tensor]:
        """(inits (B, Q, C), embeds (B, Q, C)) for table rows `rows` sharing the table's row-0 embed."""
        inits = table[rows]
        embeds = table[0].expand_as(inits)
        return inits.expand(batch, -1, -1), embeds.expand(batch, -1, -1)

    def instance(self, batch: int) -> tuple[Tensor, Tensor]:
        return self._expand(self._instance_queries, slice(1, None), batch)

    def background(self, batch: int) -> tuple[Tensor, Tensor]:
        return self._expand(self._background_queries, slice(1, None), batch)

    def semantic(self, dataset: str, batch: int) -> tuple[Tensor, Tensor]:
        start, end = self._slice(dataset)
        return self._expand(self._semantic_queries, slice(start, end), batch)

    def background_vos_embed(self) -> Tensor:
        """(C,) positional embedding shared by the object encoder's background queries."""
        return self._background_vos_queries[0]

    def vos_embed(self) -> Tensor:
        """(C,) positional embedding shared by every VOS/PET object query."""
        return self._vos_queries[0]
