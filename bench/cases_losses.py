"""Loss + matching at the original's training shapes: ours (all layers batched) against a per-layer loop.

    python bench/gpu_report.py --only losses          (GPU; CPU timings: pytest bench/test_bench_losses.py)

Shapes (SPEC §4, §5.3): one clip per GPU of T = 3 frames at 512x512 (logits 128x128), 10 decoder outputs,
12544 points per mask:
- VIS: 128 instance queries, 40 classes (YouTube-VIS), 6 instances; semantic loss over 1 + 40 channels
- VPS: 128 instance queries, 19 classes (Cityscapes-VPS), 6 instances, a void region; 50176 semantic points
- VOS: 4 objects + background

The reference, `per_layer_losses`, is the direct way the original computes them: a Python loop over layers,
and over samples inside the matcher, each (layer, sample) sampling its own predictions and targets (matched
target masks copied at full resolution per pair). It reads the same points as ours from the same
`PointSource`, so both give the same numbers (bench/test_bench_losses.py checks this).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from benchcase import BenchCase
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tarvis_fast.config import LossConfig
from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction
from tarvis_fast.training.losses import TarvisCriterion, semantic_map_from_instances
from tarvis_fast.training.point_sampling import (
    PointSource, RandomPoints, candidate_shape, num_uncertain_points, point_sample,
)


@dataclass(frozen=True)
class Shape:
    name: str
    task: str  # "vis", "vps" or "vos"
    layers: int = 10
    batch: int = 1
    queries: int = 128
    frames: int = 3
    height: int = 512
    width: int = 512
    classes: int = 40
    instances: int = 6  # per sample; objects for VOS
    num_points: int = 12544
    semantic_points: int = 50176  # VPS

    def config(self) -> LossConfig:
        return LossConfig(panoptic_instance_num_points=self.num_points, panoptic_semantic_num_points=self.semantic_points)


SHAPES = (
    Shape("train vis", "vis"),
    Shape("train vps", "vps", classes=19),
    Shape("train vos", "vos", instances=4),
)
DTYPES = (torch.float32, torch.bfloat16)
MODES = ("fwd", "fwd+bwd")

Layers = list[InstancePrediction] | list[ObjectPrediction]
Targets = InstanceTargets | PanopticTargets | ObjectTargets


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device,
                requires_grad: bool = False) -> tuple[Layers, Targets]:
    """Random predictions of every layer and rectangular target masks (some frames without an instance)."""
    g = torch.Generator().manual_seed(0)
    L, B, Q, T, C, N = shape.layers, shape.batch, shape.queries, shape.frames, shape.classes, shape.instances
    H, W, h, w = shape.height, shape.width, shape.height // 4, shape.width // 4

    def logits(*size: int) -> Tensor:
        return (3 * torch.randn(*size, generator=g)).to(device=device, dtype=dtype).requires_grad_(requires_grad)

    masks = torch.zeros(B, N, T, H, W, dtype=torch.bool)
    for b in range(B):
        for n in range(N):
            for t in range(T):
                y, x = torch.randint(0, H // 2, (2,), generator=g).tolist()
                size = int(torch.randint(H // 8, H // 2, (1,), generator=g))
                masks[b, n, t, y:y + size, x:x + size] = (n + t) % 5 != 4
    masks = masks.to(device)
    if shape.task == "vos":
        return ([ObjectPrediction(logits(B, N, T, h, w), logits(B, 1, T, h, w)) for _ in range(L)],
                ObjectTargets(masks))
    semantic_channels = C if shape.task == "vps" else 1 + C
    layers = [InstancePrediction(logits(B, Q, T, h, w), logits(B, Q, 1 + C), logits(B, semantic_channels, T, h, w))
              for _ in range(L)]
    instances = InstanceTargets(tuple(masks), tuple(torch.randint(1, C + 1, (B, N), generator=g).to(device)))
    if shape.task == "vis":
        return layers, instances
    semantic = torch.randint(0, C, (B, T, H // 16, W // 16), generator=g).repeat_interleave(16, 2)
    ignore = torch.zeros(B, T, H, W, dtype=torch.bool)
    ignore[:, :, : H // 4] = True
    return layers, PanopticTargets(instances, semantic.repeat_interleave(16, 3).to(device), ignore.to(device))


def min_bytes(shape: Shape, dtype: torch.dtype) -> int:
    """Every prediction read once, every target mask read once (bool)."""
    h, w = shape.height // 4, shape.width // 4
    per_layer = shape.batch * shape.frames * h * w * (
        1 + shape.instances if shape.task == "vos" else shape.queries + shape.classes + 1)
    targets = shape.batch * shape.instances * shape.frames * shape.height * shape.width
    return shape.layers * per_layer * dtype.itemsize + targets


# --------------------------------------------------------------------------------------------------------------
# The per-layer loop


def _uncertain(values: Tensor, uncertainty: Callable[[Tensor], Tensor], candidates: Tensor, uniform: Tensor,
               num_points: int) -> Tensor:
    """PointRend importance sampling of one layer: values (N, K, h, w) -> points (N, P, 2)."""
    with torch.no_grad():
        scores = uncertainty(point_sample(values, candidates))
        top = scores.topk(num_uncertain_points(num_points), dim=1).indices
        return torch.cat([candidates[torch.arange(len(top), device=top.device)[:, None], top], uniform], 1)


def _binary(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean BCE and +1 dice of point logits x against labels t, both (N, P)."""
    s = x.sigmoid()
    return (F.binary_cross_entropy_with_logits(x, t, reduction="none").mean(1),
            1 - (2 * (s * t).sum(1) + 1) / (s.sum(1) + t.sum(1) + 1))


@torch.no_grad()
def _match_one(pred: Tensor, classes_logits: Tensor, masks: Tensor, classes: Tensor, points: Tensor) -> tuple:
    """One (layer, sample): pred (Q, T, h, w), masks (N, T, H, W), points (P, 2)."""
    x = point_sample(pred, points[None].expand(len(pred), -1, -1)).flatten(1)
    t = point_sample(masks.to(x.dtype), points[None].expand(len(masks), -1, -1)).flatten(1)
    ce = (torch.einsum("qp,np->qn", F.softplus(-x), t) + torch.einsum("qp,np->qn", F.softplus(x), 1 - t)) / x.shape[1]
    s = x.sigmoid()
    dice = 1 - (2 * torch.einsum("qp,np->qn", s, t) + 1) / (s.sum(1)[:, None] + t.sum(1)[None] + 1)
    cost = 5 * ce + 2 * -classes_logits.softmax(-1)[:, classes] + 5 * dice
    return linear_sum_assignment(cost.cpu().numpy())


def _multiclass_uncertainty(v: Tensor) -> Tensor:
    top2 = v.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def _uncertainty_off_ignore(v: Tensor) -> Tensor:
    """Channel 0 is the 1/4-resolution ignore map: candidates touching it get -1000."""
    return torch.where(v[:, 0] != 0, -1000.0, _multiclass_uncertainty(v[:, 1:]))


def _semantic_one(logits: Tensor, label_map: Tensor, ignore: Tensor | None, candidates: Tensor, uniform: Tensor,
                  num_points: int, mode: str) -> Tensor:
    """One layer's semantic CE: logits (BT, K, h, w), label_map and ignore (BT, 1, H, W)."""
    if ignore is None:
        points = _uncertain(logits, _multiclass_uncertainty, candidates, uniform, num_points)
    else:
        low = (F.interpolate(ignore.to(logits.dtype), scale_factor=0.25, mode="bilinear") > 0.5).to(logits.dtype)
        points = _uncertain(torch.cat([low, logits], 1), _uncertainty_off_ignore, candidates, uniform, num_points)
    labels = point_sample(label_map.to(logits.dtype), points, mode=mode)[:, 0].long()
    if ignore is not None:
        labels[point_sample(ignore.to(logits.dtype), points, mode="nearest")[:, 0] != 0] = -100
    return F.cross_entropy(point_sample(logits, points), labels, ignore_index=-100)


def per_layer_losses(layers: Layers, targets: Targets, config: LossConfig, num_points: int,
                     source: PointSource) -> dict[str, Tensor]:
    """Each layer on its own, the original's way; {"family.key": (L,)} for the keys ours also returns."""
    L = len(layers)
    first = layers[0].object_logits if isinstance(targets, ObjectTargets) else layers[0].mask_logits
    dtype, device = torch.promote_types(first.dtype, torch.float32), first.device

    def draw(name: str, rows: int, points: int) -> tuple[Tensor, Tensor]:
        c, u = candidate_shape(points)
        return (source(f"{name}.candidates", (L, rows, c, 2), dtype, device),
                source(f"{name}.uniform", (L, rows, u, 2), dtype, device))

    out: dict[str, list[Tensor]] = {}
    if isinstance(targets, ObjectTargets):
        gt = torch.cat([~targets.masks.any(1, keepdim=True), targets.masks], 1).flatten(0, 2)[:, None].to(dtype)
        candidates, uniform = draw("objects", len(gt), num_points)
        for l, layer in enumerate(layers):
            pred = torch.cat([layer.background_logits, layer.object_logits], 1).to(dtype).flatten(0, 2)[:, None]
            points = _uncertain(pred, lambda v: -v.abs()[:, 0], candidates[l], uniform[l], num_points)
            ce, dice = _binary(point_sample(pred, points)[:, 0], point_sample(gt, points)[:, 0])
            out.setdefault("objects.ce", []).append(ce.mean())
            out.setdefault("objects.dice", []).append(dice.mean())
        return {k: torch.stack(v) for k, v in out.items()}

    panoptic = isinstance(targets, PanopticTargets)
    instances = targets.instances if panoptic else targets
    T = instances.clip_shape[0]
    inst_points = config.panoptic_instance_num_points if panoptic else num_points
    match_points = source("match", (L, instances.batch_size, inst_points, 2), dtype, device)
    pairs = sum(min(len(c), layers[0].mask_logits.shape[1]) for c in instances.classes)
    if pairs:
        candidates, uniform = draw("instance", pairs * T, inst_points)
    num_masks = max(float(sum(len(c) for c in instances.classes)), 1.0) * T
    if panoptic:
        label_map, ignore = targets.semantic.flatten(0, 1)[:, None], targets.ignore.flatten(0, 1)[:, None]
        sem_points, mode = config.panoptic_semantic_num_points, "nearest"
    else:
        label_map, ignore = semantic_map_from_instances(instances).flatten(0, 1)[:, None], None
        sem_points, mode = num_points, "bilinear"
    sem_candidates, sem_uniform = draw("semantic", label_map.shape[0], sem_points)

    for l, layer in enumerate(layers):
        mask_logits, class_logits = layer.mask_logits.to(dtype), layer.class_logits.to(dtype)
        src, tgt, target_classes = [], [], torch.zeros(class_logits.shape[:2], dtype=torch.int64, device=device)
        for b, (masks, classes) in enumerate(zip(instances.masks, instances.classes)):
            rows, cols = _match_one(mask_logits[b], class_logits[b], masks, classes, match_points[l, b])
            rows, cols = torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)
            src.append(mask_logits[b, rows])
            tgt.append(masks[cols])
            target_classes[b, rows] = classes[cols]
        if pairs:
            pred = torch.cat(src).flatten(0, 1)[:, None]
            points = _uncertain(pred, lambda v: -v.abs()[:, 0], candidates[l], uniform[l], inst_points)
            gt = torch.cat(tgt).flatten(0, 1)[:, None].to(dtype)
            ce, dice = _binary(point_sample(pred, points)[:, 0], point_sample(gt, points)[:, 0])
            ce, dice = ce.sum() / num_masks, dice.sum() / num_masks
        else:
            ce = dice = mask_logits.sum() * 0
        weights = torch.ones(class_logits.shape[-1], dtype=dtype, device=device)
        weights[0] = 0.1
        cls = F.cross_entropy(class_logits.transpose(1, 2), target_classes, weights)
        semantic = layer.semantic_logits.to(dtype).transpose(1, 2).flatten(0, 1)
        sem_ce = _semantic_one(semantic, label_map, ignore, sem_candidates[l], sem_uniform[l], sem_points, mode)
        for key, value in (("instance.mask_ce", ce), ("instance.mask_dice", dice), ("instance.cls", cls),
                           ("semantic.ce", sem_ce)):
            out.setdefault(key, []).append(value)
    return {k: torch.stack(v) for k, v in out.items()}


def batched_losses(layers: Layers, targets: Targets, config: LossConfig, num_points: int,
                   source: PointSource) -> dict[str, Tensor]:
    """Ours, flattened to the reference's keys (weighted totals left out)."""
    result = TarvisCriterion(config, num_points).layer_losses(layers, targets, source)
    return {f"{family}.{key}": value for family, losses in result.losses.items() for key, value in losses.items()
            if key != "total"}


def total(losses: dict[str, Tensor]) -> Tensor:
    return sum(v.sum() for v in losses.values())


# --------------------------------------------------------------------------------------------------------------
# GPU report


IMPLS = (("per-layer loop", per_layer_losses), ("ours (layers batched)", batched_losses))


def _setup(impl: Callable, shape: Shape, dtype: torch.dtype, mode: str, device: torch.device):
    def setup() -> Callable[[], object]:
        backward = mode == "fwd+bwd"
        layers, targets = make_inputs(shape, dtype, device, requires_grad=backward)
        source = RandomPoints(torch.Generator(device=device).manual_seed(0))
        inputs = [t for layer in layers for t in vars(layer).values()]

        def run() -> object:
            if not backward:
                with torch.no_grad():
                    return impl(layers, targets, shape.config(), shape.num_points, source)
            return torch.autograd.grad(total(impl(layers, targets, shape.config(), shape.num_points, source)),
                                       inputs, allow_unused=True)

        run()
        return run

    return setup


def cases(device: torch.device) -> Iterable[BenchCase]:
    for shape in SHAPES:
        for dtype in DTYPES:
            for mode in MODES:
                group = f"losses {shape.name} {str(dtype).removeprefix('torch.')}"
                for name, impl in IMPLS:
                    yield BenchCase(group, name, mode, _setup(impl, shape, dtype, mode, device),
                                    min_bytes(shape, dtype))
