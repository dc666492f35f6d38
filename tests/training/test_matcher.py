"""Hungarian matching: the batched costs against the cost formula written out per (layer, sample), and the
assignment's edge cases (more instances than queries, a sample without instances)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tarvis_fast.data.targets import InstanceTargets
from tarvis_fast.training.matcher import MatchCosts, match_instances, matching_costs
from tarvis_fast.training.point_sampling import point_sample

L, B, Q, T, H, W, C, P = 2, 3, 4, 2, 16, 24, 3, 40
COSTS = MatchCosts()


def _inputs(counts=(2, 0, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask_logits = 3 * torch.randn(L, B, Q, T, H // 4, W // 4, generator=g, dtype=torch.float64)
    class_logits = torch.randn(L, B, Q, 1 + C, generator=g, dtype=torch.float64)
    targets = InstanceTargets(tuple(torch.rand(n, T, H, W, generator=g) > 0.5 for n in counts),
                              tuple(torch.randint(1, C + 1, (n,), generator=g) for n in counts))
    points = torch.rand(L, B, P, 2, generator=g, dtype=torch.float64)
    return mask_logits, class_logits, targets, points


def _cost_of_one(mask_logits, class_logits, masks, classes, points, costs=COSTS):
    """The cost of one (layer, sample), straight from the definition: (Q, N)."""
    pred = point_sample(mask_logits, points[None].expand(Q, -1, -1)).flatten(1)              # (Q, T*P)
    gt = point_sample(masks.double(), points[None].expand(len(masks), -1, -1)).flatten(1)    # (N, T*P)
    x, t = pred[:, None], gt[None]
    ce = F.binary_cross_entropy_with_logits(x.expand(-1, len(gt), -1), t.expand(Q, -1, -1), reduction="none").mean(-1)
    s = x.sigmoid()
    dice = 1 - (2 * (s * t).sum(-1) + 1) / (s.sum(-1) + t.sum(-1) + 1)
    prob = -class_logits.softmax(-1)[:, classes]
    return costs.mask_ce * ce + costs.class_prob * prob + costs.mask_dice * dice


def test_batched_costs_equal_the_definition() -> None:
    mask_logits, class_logits, targets, points = _inputs()
    costs = matching_costs(mask_logits, class_logits, targets, points)
    assert costs.shape == (L, B, Q, 5) and costs.dtype == torch.float64
    for layer in range(L):
        for b in range(B):
            n = len(targets.classes[b])
            expected = _cost_of_one(mask_logits[layer, b], class_logits[layer, b], targets.masks[b],
                                    targets.classes[b], points[layer, b])
            torch.testing.assert_close(costs[layer, b, :, :n], expected, rtol=0, atol=1e-12)


def test_assignment_sizes() -> None:
    mask_logits, class_logits, targets, points = _inputs()
    matches = match_instances(mask_logits, class_logits, targets, points)
    for layer in matches:
        assert [len(q) for q, _ in layer] == [2, 0, Q]  # min(Q, N_b): 5 instances, 4 queries -> 4 matched
        for queries, instances in layer:
            assert torch.equal(queries, queries.sort().values) and len(set(instances.tolist())) == len(instances)


def test_half_inputs_cost_in_fp32() -> None:
    mask_logits, class_logits, targets, points = _inputs()
    costs = matching_costs(mask_logits.half(), class_logits.half(), targets, points.float())
    assert costs.dtype == torch.float32
    reference = matching_costs(mask_logits.half().float(), class_logits.half().float(), targets, points.float())
    torch.testing.assert_close(costs, reference)
