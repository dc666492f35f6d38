"""Hungarian matching of instance queries to ground-truth instances (SPEC §5.3), for every decoder layer at once.

One assignment per (layer, sample) for the whole clip: a query's T frame masks are matched together. The cost of
query q for instance n is

    5 * mean BCE(mask_q, mask_n) + 2 * (-softmax(class_logits_q)[class_n]) + 5 * dice(mask_q, mask_n)

on P random points shared by every mask and frame of the sample (T * P values per mask), in fp32 or wider.
The class costs of all layers and samples come from one batched op and the targets of a sample are read at all
layers' points at once; the mask costs (a grid_sample and two matmuls) and `linear_sum_assignment` (on the CPU,
as it must) run once per (layer, sample). No dense full-resolution cost volume is ever built.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tarvis_fast.data.targets import InstanceTargets
from tarvis_fast.training.point_sampling import point_sample

Match = tuple[Tensor, Tensor]
"""(query indices, target indices), int64 on the CPU, sorted by query index."""


@dataclass(frozen=True)
class MatchCosts:
    """Weights of the three matching costs (the original's, fixed in its code)."""

    mask_ce: float = 5.0
    class_prob: float = 2.0
    mask_dice: float = 5.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half inputs (AMP), else the input's own float type: costs and point losses never run in 16 bits."""
    return torch.promote_types(dtype, torch.float32)


def padded_target_classes(targets: InstanceTargets) -> tuple[Tensor, Tensor]:
    """Class ids and a validity mask, padded to the largest instance count: (B, N_max) int64, (B, N_max) bool."""
    counts = [len(c) for c in targets.classes]
    n_max = max(counts)
    device = targets.classes[0].device
    ids = torch.zeros(len(counts), n_max, dtype=torch.int64, device=device)
    valid = torch.zeros(len(counts), n_max, dtype=torch.bool, device=device)
    for b, classes in enumerate(targets.classes):
        ids[b, : len(classes)] = classes
        valid[b, : len(classes)] = True
    return ids, valid


def mask_costs(pred: Tensor, gt: Tensor, costs: MatchCosts) -> Tensor:
    """Weighted mask BCE + dice costs of every (query, instance) pair: pred (Q, T*P) logits, gt (N, T*P) -> (Q, N)."""
    # Mean BCE over points: sum_p softplus(x) - x * t (= t * BCE(x, 1) + (1 - t) * BCE(x, 0)), as one matmul.
    gt_t = gt.T
    cost_ce = (F.softplus(pred).sum(-1, keepdim=True) - pred @ gt_t) / pred.shape[1]
    prob = pred.sigmoid()
    cost_dice = 1 - (2 * (prob @ gt_t) + 1) / (prob.sum(-1, keepdim=True) + gt.sum(-1) + 1)
    return costs.mask_ce * cost_ce + costs.mask_dice * cost_dice


@torch.no_grad()
def matching_costs(
    mask_logits: Sequence[Tensor], class_logits: Tensor, targets: InstanceTargets, points: Tensor,
    costs: MatchCosts = MatchCosts(),
) -> Tensor:
    """The cost of every (query, instance) pair, for every layer and sample.

    mask_logits:  per layer, (B, Q, T, h, w) at 1/4 of the targets' resolution
    class_logits: (L, B, Q, 1 + C)
    points:       (L, B, P, 2), each (layer, sample) its own P points, shared by its masks and frames
    returns       (L, B, Q, N_max) in fp32 or wider; columns n >= N_b of sample b are padding
    """
    num_layers = len(mask_logits)
    queries, frames = mask_logits[0].shape[1:3]
    dtype = compute_dtype(mask_logits[0].dtype)
    points = points.to(dtype)

    ids, _ = padded_target_classes(targets)
    class_prob = class_logits.to(dtype).softmax(-1)  # (L, B, Q, 1 + C)
    cost = -costs.class_prob * class_prob.gather(3, ids[None, :, None, :].expand(num_layers, -1, queries, -1))

    for b, masks in enumerate(targets.masks):
        n = len(masks)
        if not n:
            continue
        # Targets: the sample's N*T full-resolution masks read at all layers' points in one call -> (L, N, T*P).
        gt = point_sample(masks.to(dtype).reshape(1, n * frames, *masks.shape[-2:]), points[:, b][None])
        gt = gt.reshape(n, frames, num_layers, -1).permute(2, 0, 1, 3).flatten(2)
        for l, layer in enumerate(mask_logits):
            # Each query a batch row of T channels, the points broadcast over queries (no copy). Reading the Q*T
            # channels of one row at each point instead is several times slower on CPU (Q*T planes far apart),
            # and stacking all layers' samples first costs a copy and ~10x the memory for no gain.
            pred = point_sample(layer[b].to(dtype), points[l, b][None].expand(queries, -1, -1)).flatten(1)
            cost[l, b, :, :n] += mask_costs(pred, gt[l], costs)
    return cost


def assign(costs: Tensor, targets: InstanceTargets) -> list[list[Match]]:
    """Hungarian assignment of each (layer, sample): costs (L, B, Q, N_max) -> matches[l][b]."""
    costs = costs.cpu()
    matches = []
    for layer_costs in costs:
        layer = []
        for b, sample_costs in enumerate(layer_costs):
            rows, cols = linear_sum_assignment(sample_costs[:, : len(targets.classes[b])].numpy())
            layer.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        matches.append(layer)
    return matches


def match_instances(
    mask_logits: Sequence[Tensor], class_logits: Tensor, targets: InstanceTargets, points: Tensor,
    costs: MatchCosts = MatchCosts(),
) -> list[list[Match]]:
    """matches[l][b] = (query indices, instance indices) of layer l, sample b (shapes as in `matching_costs`)."""
    return assign(matching_costs(mask_logits, class_logits, targets, points, costs), targets)
