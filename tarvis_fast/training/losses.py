"""Every TarViS training loss, for every decoder output in one call (SPEC §5.3), named as the original logs them.

    criterion = TarvisCriterion.from_config(cfg.training)
    losses = criterion(output.layers, targets)        # {"TotalL": ..., "ISegCeL": ..., "Aux_ISegCeL": ..., ...}
    losses["TotalL"].backward()

The task follows from the types: `InstancePrediction` layers with `InstanceTargets` (VIS: instance + semantic loss)
or `PanopticTargets` (VPS: instance + sparse semantic loss with ignore), `ObjectPrediction` layers with
`ObjectTargets` (VOS and PET: background + per-object mask loss).

Every loss is a mean or a sum over PointRend points (`point_sampling`), computed for all L decoder layers at
once: the masks to supervise (matched queries, VOS channels, semantic (sample, frame) rows) of every layer are
gathered into one tensor and read at their points in one `grid_sample`; each full-resolution target map is read
once, at all layers' points; classification and its weights are one batched op. Two steps go per layer on
purpose: the matcher's mask costs and assignment (see `matcher`), and the semantic loss's reading of every
class at its 3P candidates (the largest tensor; per layer it bounds the memory). Point losses and costs run in
fp32 for half-precision (AMP) inputs, in float64 for float64 inputs.

Quirks of the original reproduced here (named where they happen): the VIS semantic labels are read from the
class-id map by *bilinear* interpolation and truncated to int (`LossConfig.semantic_labels_nearest` reads them
with nearest instead); ignored VPS points are only made unlikely, not impossible, for the uncertainty-chosen
points; null-class elimination writes -1000 logits that the regulariser then sees; the VPS semantic dice leaves
out class 0; log names `Aux_SSegCe` (no trailing L) and the regularisers logged as the mean over all layers.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from tarvis_fast.config import LossConfig, TrainingConfig
from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction
from tarvis_fast.training.matcher import Match, MatchCosts, compute_dtype, match_instances
from tarvis_fast.training.point_sampling import (
    PointSource, RandomPoints, binary_uncertainty, draw_uncertain_points, most_uncertain_points,
    multiclass_uncertainty, point_sample,
)

MASK_CE_WEIGHT = 5.0          # instance and VOS mask BCE
MASK_DICE_WEIGHT = 5.0        # instance and VOS mask dice
CLASS_WEIGHT = 2.0            # instance classification
NO_OBJECT_WEIGHT = 0.1        # class weight of the no-object class (index 0) in the classification CE
REGULARIZATION_WEIGHT = 1e-3  # semantic logit-norm regulariser
NULL_CLASS_LOGIT = -1000.0    # logit given to classes absent from the labels and never predicted
IGNORED_UNCERTAINTY = -1000.0  # VPS: uncertainty of candidate points touching an ignore region
IGNORE_INDEX = -100
MULTICLASS_DICE_EPS = 1e-6

LayerLosses = dict[str, Tensor]
"""One loss family's losses, each (L,): one value per decoder layer."""

CountReducer = Callable[[Tensor], Tensor]


def mean_over_ranks(count: Tensor) -> Tensor:
    """The mean of `count` over the torch.distributed ranks (itself when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        count = count.clone()
        dist.all_reduce(count)
        return count / dist.get_world_size()
    return count


# --------------------------------------------------------------------------------------------------------------
# Point losses shared by the tasks


def sample_targets(targets: Tensor, points: Tensor, rows: Tensor | None, mode: str = "bilinear") -> Tensor:
    """Read full-resolution target maps at every layer's points, each map once.

    targets: (G, 1, H, W); points: (L, M, P, 2); rows: (L, M) index of the target map of each (layer, row), or
    None when row m is map m in every layer (M == G). Returns (L, M, P).
    """
    num_layers, _, num_points, _ = points.shape
    if rows is None:
        grid = points.transpose(0, 1)
    else:
        # Scatter each layer's rows to their maps: a map is the target of at most one row per layer.
        grid = points.new_zeros(targets.shape[0], num_layers, num_points, 2)
        grid[rows, torch.arange(num_layers, device=rows.device)[:, None]] = points
    sampled = point_sample(targets, grid, mode=mode)[:, 0]  # (G, L, P)
    if rows is None:
        return sampled.transpose(0, 1)
    return sampled[rows, torch.arange(num_layers, device=rows.device)[:, None]]


def binary_point_losses(
    logits: Tensor, targets: Tensor, rows: Tensor | None, num_points: int, source: PointSource, name: str,
) -> tuple[Tensor, Tensor]:
    """Per-mask sigmoid BCE (mean over points) and dice (+1 smoothing) at uncertainty-sampled points.

    logits: (L, M, h, w) mask logits (compute dtype); targets: (G, 1, H, W) binary maps, row m of layer l
    supervised by map rows[l, m] (or m when rows is None). Returns (L, M) BCE and (L, M) dice.
    """
    num_layers, num_rows, h, w = logits.shape
    flat = logits.reshape(num_layers * num_rows, 1, h, w)
    candidates, uniform = draw_uncertain_points(source, name, (num_layers, num_rows), num_points,
                                                logits.dtype, logits.device)
    with torch.no_grad():
        uncertainty = binary_uncertainty(point_sample(flat, candidates.flatten(0, 1))[:, 0])
        points = most_uncertain_points(candidates.flatten(0, 1), uncertainty, uniform.flatten(0, 1), num_points)
        points = points.reshape(num_layers, num_rows, num_points, 2)
        labels = sample_targets(targets, points, rows)
    point_logits = point_sample(flat, points.flatten(0, 1))[:, 0].reshape(num_layers, num_rows, num_points)
    bce = F.binary_cross_entropy_with_logits(point_logits, labels, reduction="none").mean(-1)
    prob = point_logits.sigmoid()
    dice = 1 - (2 * (prob * labels).sum(-1) + 1) / (prob.sum(-1) + labels.sum(-1) + 1)
    return bce, dice


# --------------------------------------------------------------------------------------------------------------
# Instance loss (VIS, VPS): matching, mask BCE + dice on matched pairs, classification


def matched_rows(matches: list[list[Match]], targets: InstanceTargets) -> tuple[Tensor, Tensor, Tensor]:
    """Matched (sample, query) pairs of every layer, in the original's order (sample, then query index), and
    the target-frame map of each pair: (L, K) sample, (L, K) query, (L, K) instance index among all samples'."""
    offsets = torch.tensor([0, *torch.tensor([len(c) for c in targets.classes]).cumsum(0).tolist()])
    samples, queries, instances = [], [], []
    for layer in matches:
        samples.append(torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(layer)]))
        queries.append(torch.cat([q for q, _ in layer]))
        instances.append(torch.cat([offsets[b] + n for b, (_, n) in enumerate(layer)]))
    return torch.stack(samples), torch.stack(queries), torch.stack(instances)


def num_masks_for_normalisation(targets: InstanceTargets, reduce_count: CountReducer, device: torch.device) -> float:
    """The number of GT instances averaged over ranks, at least 1, times T: what mask losses are divided by."""
    count = torch.tensor([float(sum(len(c) for c in targets.classes))], device=device)
    return float(reduce_count(count).clamp(min=1).item()) * targets.clip_shape[0]


def instance_losses(
    mask_logits: Sequence[Tensor], class_logits: Tensor, targets: InstanceTargets, num_points: int,
    source: PointSource, reduce_count: CountReducer = mean_over_ranks,
) -> tuple[LayerLosses, list[list[Match]]]:
    """Instance mask and class losses of every layer, and the matching they used.

    mask_logits: per layer (B, Q, T, h, w), not stacked (only the matched queries' masks are ever copied);
    class_logits: (L, B, Q, 1 + C). Returns {"mask_ce", "mask_dice", "cls", "total"} each (L,), and matches[l][b].
    """
    num_layers = len(mask_logits)
    batch, queries, frames, h, w = mask_logits[0].shape
    device = mask_logits[0].device
    dtype = compute_dtype(mask_logits[0].dtype)
    match_points = source("match", (num_layers, batch, num_points, 2), dtype, device)
    matches = match_instances(mask_logits, class_logits, targets, match_points, MatchCosts())
    num_masks = num_masks_for_normalisation(targets, reduce_count, device)

    samples, query_idx, instance_idx = (x.to(device) for x in matched_rows(matches, targets))
    num_pairs = samples.shape[1]
    if num_pairs:
        # Each matched pair gives T masks, one per frame (row k * T + t), as in the original.
        logits = torch.stack([layer[samples[l], query_idx[l]] for l, layer in enumerate(mask_logits)])
        logits = logits.to(dtype).reshape(num_layers, num_pairs * frames, h, w)
        frame_idx = torch.arange(frames, device=device)
        rows = (instance_idx[..., None] * frames + frame_idx).flatten(1)
        gt = torch.cat(list(targets.masks)).to(dtype).flatten(0, 1)[:, None]  # (sum N_b * T, 1, H, W)
        bce, dice = binary_point_losses(logits, gt, rows, num_points, source, "instance")
        mask_ce, mask_dice = bce.sum(-1) / num_masks, dice.sum(-1) / num_masks
    else:  # no instance in the batch: zero, still attached to the graph
        mask_ce = mask_dice = torch.stack([layer.to(dtype).sum() * 0 for layer in mask_logits])

    # Classification: unmatched queries are "no object" (class 0), weighted 0.1; weighted mean per layer.
    classes = torch.zeros(num_layers, batch, queries, dtype=torch.int64, device=device)
    all_classes = torch.cat(list(targets.classes)).to(device)
    classes[torch.arange(num_layers, device=device)[:, None], samples, query_idx] = all_classes[instance_idx]
    class_weights = torch.ones(class_logits.shape[-1], dtype=dtype, device=device)
    class_weights[0] = NO_OBJECT_WEIGHT
    nll = -class_logits.to(dtype).log_softmax(-1).gather(3, classes[..., None])[..., 0]
    weights = class_weights[classes]
    cls = (weights * nll).sum((1, 2)) / weights.sum((1, 2))

    total = MASK_CE_WEIGHT * mask_ce + MASK_DICE_WEIGHT * mask_dice + CLASS_WEIGHT * cls
    return {"mask_ce": mask_ce, "mask_dice": mask_dice, "cls": cls, "total": total}, matches


# --------------------------------------------------------------------------------------------------------------
# Semantic losses (VIS from instance masks, VPS sparse with ignore)


def semantic_map_from_instances(targets: InstanceTargets) -> Tensor:
    """(B, T, H, W) int64 class map: 0 = background, instances painted largest first so that smaller ones
    (painted later) win where instances overlap. Equal areas keep their given order (stable sort)."""
    maps = []
    for masks, classes in zip(targets.masks, targets.classes):
        semantic = torch.zeros(masks.shape[1:], dtype=torch.int64, device=masks.device)
        order = masks.flatten(1).sum(1).argsort(descending=True, stable=True)
        for n in order.tolist():
            semantic[masks[n]] = classes[n]
        maps.append(semantic)
    return torch.stack(maps)


def eliminate_null_classes(point_logits: Tensor, labels: Tensor) -> Tensor:
    """Per layer, classes absent from the labels *and* never the argmax at any point get logit -1000.

    point_logits: (L, N, K, P); labels: (L, N, P) with IGNORE_INDEX for ignored points.
    """
    num_layers, _, num_classes, _ = point_logits.shape
    layer_idx = torch.arange(num_layers, device=labels.device)[:, None]
    present = torch.zeros(num_layers, num_classes + 1, dtype=torch.bool, device=labels.device)
    # Ignored points go to the extra slot num_classes, dropped below.
    present[layer_idx, torch.where(labels < 0, num_classes, labels).flatten(1)] = True
    predicted = torch.zeros_like(present)
    predicted[layer_idx, point_logits.detach().max(2).indices.flatten(1)] = True
    null = ~(present | predicted)[:, :num_classes]
    return torch.where(null[:, None, :, None], torch.full_like(point_logits, NULL_CLASS_LOGIT), point_logits)


def multiclass_dice(point_logits: Tensor, labels: Tensor) -> Tensor:
    """The original's multi-class dice over points, per layer: softmax, one-hot, class 0 left out (quirk: in VPS
    class 0 is a real class), per (sample, frame) row 2*mean(p*g) / mean(p + g) with eps 1e-6, and 0 for a row
    whose numerator is <= eps. Ignored points count as neither prediction nor target (the original cannot take
    them at all).

    point_logits: (L, N, K, P); labels: (L, N, P). Returns (L,), the mean over rows.
    """
    prob = point_logits.softmax(2)
    valid = labels >= 0
    onehot = F.one_hot(labels.clamp(min=0), point_logits.shape[2]).movedim(-1, 2).to(prob.dtype)
    prob, onehot = (x[:, :, 1:] * valid[:, :, None] for x in (prob, onehot))
    numerator = 2 * (prob * onehot).flatten(2).mean(-1)
    denominator = (prob + onehot).flatten(2).mean(-1)
    iou = (numerator + MULTICLASS_DICE_EPS) / (denominator + MULTICLASS_DICE_EPS)
    return torch.where(numerator > MULTICLASS_DICE_EPS, 1 - iou, iou * 0).mean(-1)


@dataclass(frozen=True)
class SemanticOptions:
    """How a semantic loss reads its labels and what it adds (from `LossConfig`)."""

    num_points: int
    weight_ce: float
    weight_dice: float = 0.0
    ignore_null_classes: bool = False
    regularization: bool = False
    label_mode: str = "nearest"  # "bilinear": the original VIS quirk (class ids interpolated, then truncated)


def semantic_losses(
    logits: Tensor, label_map: Tensor, options: SemanticOptions, source: PointSource, name: str,
    ignore: Tensor | None = None,
) -> LayerLosses:
    """Point-sampled multi-class CE (+ optional dice and logit regulariser) of every layer.

    logits: (L, N, K, h, w) with N = B * T (sample-major); label_map: (N, 1, H, W) class ids in 0..K-1;
    ignore: optional (N, 1, H, W) bool. Returns {"ce", "total"} (+ "dice", "reg") each (L,).
    """
    num_layers, rows, num_classes, h, w = logits.shape
    flat = logits.reshape(num_layers * rows, num_classes, h, w)
    candidates, uniform = draw_uncertain_points(source, name, (num_layers, rows), options.num_points,
                                                logits.dtype, logits.device)
    with torch.no_grad():
        # One layer at a time: every class read at 3P candidates is the largest tensor of the losses (e.g. 10
        # layers x 3 frames x 41 classes x 37632 points, 185 MB in fp32, twice over for the top-2).
        uncertainty = torch.cat([multiclass_uncertainty(point_sample(logits[l], candidates[l]))
                                 for l in range(num_layers)])
        if ignore is not None:
            # The original steers its chosen points off ignore regions with an ignore map at the logits'
            # resolution (bilinear 1/4, > 0.5): a candidate whose bilinear read of it is non-zero gets
            # uncertainty -1000. Such points can still be chosen (too few others) or drawn uniformly.
            ignore_low = F.interpolate(ignore.to(logits.dtype), scale_factor=0.25, mode="bilinear",
                                       align_corners=False) > 0.5
            touched = point_sample(ignore_low.to(logits.dtype), candidates.transpose(0, 1))[:, 0] != 0
            uncertainty = uncertainty.masked_fill(touched.transpose(0, 1).flatten(0, 1), IGNORED_UNCERTAINTY)
        points = most_uncertain_points(candidates.flatten(0, 1), uncertainty, uniform.flatten(0, 1),
                                       options.num_points).reshape(num_layers, rows, options.num_points, 2)
        # Truncation, not rounding, of the read class id: the original's .to(int64).
        labels = sample_targets(label_map.to(logits.dtype), points, None, options.label_mode).to(torch.int64)
        if ignore is not None:
            ignored = sample_targets(ignore.to(logits.dtype), points, None, "nearest") != 0
            labels = labels.masked_fill(ignored, IGNORE_INDEX)
        checked = labels[labels != IGNORE_INDEX]
        if checked.numel() and (int(checked.min()) < 0 or int(checked.max()) >= num_classes):
            raise ValueError(f"semantic labels {checked.unique().tolist()} outside 0..{num_classes - 1}")
    point_logits = point_sample(flat, points.flatten(0, 1)).reshape(num_layers, rows, num_classes, -1)
    if options.ignore_null_classes:
        point_logits = eliminate_null_classes(point_logits, labels)

    nll = F.cross_entropy(point_logits.flatten(0, 1), labels.flatten(0, 1), ignore_index=IGNORE_INDEX,
                          reduction="none").reshape(num_layers, -1)
    valid = (labels != IGNORE_INDEX).flatten(1)
    # Mean over the points not ignored; 0 (not the original's NaN) when every point of a layer is ignored.
    ce = nll.sum(-1) / valid.sum(-1).clamp(min=1)
    out = {"ce": ce}
    total = options.weight_ce * ce
    if options.regularization:
        out["reg"] = torch.linalg.vector_norm(point_logits, dim=2).flatten(1).mean(-1)
        total = total + REGULARIZATION_WEIGHT * out["reg"]
    if options.weight_dice > 0:
        out["dice"] = multiclass_dice(point_logits, labels)
        total = total + options.weight_dice * out["dice"]
    out["total"] = total
    return out


def frames_as_rows(logits: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    """Per layer (B, K, T, h, w) -> (L, B * T, K, h, w) in `dtype`, sample-major (each (sample, frame) gets its own
    points), in channels-last memory: reading K channels at a point is then one contiguous read, several times
    faster on CPU than K reads from planes far apart."""
    rows = torch.stack([layer.permute(0, 2, 3, 4, 1) for layer in logits]).to(dtype)  # (L, B, T, h, w, K)
    return rows.flatten(1, 2).permute(0, 1, 4, 2, 3)


# --------------------------------------------------------------------------------------------------------------
# VOS / PET


def object_losses(prediction_logits: Tensor, targets: ObjectTargets, num_points: int,
                  source: PointSource) -> LayerLosses:
    """Background + per-object BCE (mean over all points) and dice (mean over masks) of every layer.

    prediction_logits: (L, B, 1 + N, T, h, w), channel 0 the background (GT: no object there).
    Every (sample, channel, frame) is its own mask. Returns {"ce", "dice", "total"} each (L,).
    """
    num_layers, batch, channels, frames, h, w = prediction_logits.shape
    dtype = compute_dtype(prediction_logits.dtype)
    background = ~targets.masks.any(1, keepdim=True)
    gt = torch.cat([background, targets.masks], 1).to(dtype).flatten(0, 2)[:, None]  # (B(1+N)T, 1, H, W)
    logits = prediction_logits.to(dtype).reshape(num_layers, batch * channels * frames, h, w)
    bce, dice = binary_point_losses(logits, gt, None, num_points, source, "objects")
    ce, dice = bce.mean(-1), dice.mean(-1)
    return {"ce": ce, "dice": dice, "total": MASK_CE_WEIGHT * ce + MASK_DICE_WEIGHT * dice}


# --------------------------------------------------------------------------------------------------------------
# The criterion


@dataclass
class LayerResult:
    """Per-layer losses of one call: family ("instance", "semantic", "objects") -> name -> (L,); the instance
    matching of every layer when there is one (matches[l][b])."""

    losses: dict[str, LayerLosses]
    matches: list[list[Match]] | None = None


def check_coverage(logits: Tensor, target_size: Sequence[int]) -> None:
    """Logits and targets are read at the same normalised points, so they must cover the same image: the logits
    (..., h, w) at 1/4 of the targets' (H, W), the model's padded input size (`trainer.pad_targets`)."""
    h, w = logits.shape[-2:]
    if (4 * h, 4 * w) != tuple(target_size):
        raise ValueError(f"logits of {h}x{w} cover a {4 * h}x{4 * w} image, the targets {target_size[0]}x"
                         f"{target_size[1]}: pad the targets to the model's padded input (trainer.pad_targets)")


def _stack(layers: Sequence[object], field: str) -> Tensor:
    return torch.stack([getattr(layer, field) for layer in layers])


def _last_and_aux(out: dict[str, Tensor], name: str, per_layer: Tensor, aux_name: str | None = None) -> None:
    per_layer = per_layer.detach()
    out[name] = per_layer[-1]
    out[aux_name or f"Aux_{name}"] = per_layer[:-1].mean()


class TarvisCriterion:
    """All of a task's losses for all decoder layers, as the original computes and names them.

    num_points: points per mask for the VIS and VOS/PET losses (`TrainingConfig.num_sampled_points_for_mask_loss`);
    VPS takes its own from `LossConfig`. reduce_count averages the instance count over ranks (default: over
    torch.distributed if initialised). Randomness: pass `points` (a `PointSource`) to a call, else fresh points
    from `generator` (or torch's global RNG).
    """

    def __init__(self, config: LossConfig, num_points: int = 12544, reduce_count: CountReducer = mean_over_ranks,
                 generator: torch.Generator | None = None) -> None:
        self.config = config
        self.num_points = num_points
        self.reduce_count = reduce_count
        self.default_points = RandomPoints(generator)

    @classmethod
    def from_config(cls, training: TrainingConfig, **kwargs) -> TarvisCriterion:
        return cls(training.losses, training.num_sampled_points_for_mask_loss, **kwargs)

    def layer_losses(
        self, layers: Sequence[InstancePrediction] | Sequence[ObjectPrediction],
        targets: InstanceTargets | PanopticTargets | ObjectTargets, points: PointSource | None = None,
    ) -> LayerResult:
        """Per-layer losses (the original's loss dicts) and matches."""
        source = self.default_points if points is None else points
        cfg = self.config
        if isinstance(targets, ObjectTargets):
            if not all(isinstance(layer, ObjectPrediction) for layer in layers):
                raise TypeError("ObjectTargets need ObjectPrediction layers (a VOS/PET forward)")
            logits = torch.cat([_stack(layers, "background_logits"), _stack(layers, "object_logits")], 2)
            if logits.shape[1:4] != (targets.masks.shape[0], 1 + targets.masks.shape[1], targets.masks.shape[2]):
                raise ValueError(f"predictions (L, B, 1 + N, T) = {tuple(logits.shape[:4])} do not fit targets "
                                 f"(B, N, T) = {tuple(targets.masks.shape[:3])}")
            check_coverage(logits, targets.masks.shape[-2:])
            return LayerResult({"objects": object_losses(logits, targets, self.num_points, source)})

        if not all(isinstance(layer, InstancePrediction) for layer in layers):
            raise TypeError(f"{type(targets).__name__} need InstancePrediction layers (a VIS/VPS forward)")
        panoptic = isinstance(targets, PanopticTargets)
        instances = targets.instances if panoptic else targets
        check_coverage(layers[0].mask_logits, instances.clip_shape[1:])
        num_points = cfg.panoptic_instance_num_points if panoptic else self.num_points
        instance, matches = instance_losses([layer.mask_logits for layer in layers], _stack(layers, "class_logits"),
                                            instances, num_points, source, self.reduce_count)
        semantic_layers = [layer.semantic_logits for layer in layers]
        semantic_logits = frames_as_rows(semantic_layers, compute_dtype(semantic_layers[0].dtype))
        if panoptic:
            options = SemanticOptions(
                cfg.panoptic_semantic_num_points, cfg.panoptic_semantic_weight_cross_entropy,
                cfg.panoptic_semantic_weight_dice, cfg.semantic_ignore_null_classes, cfg.semantic_regularization_loss,
            )
            semantic = semantic_losses(semantic_logits, targets.semantic.flatten(0, 1)[:, None], options, source,
                                       "semantic", ignore=targets.ignore.flatten(0, 1)[:, None])
        else:
            options = SemanticOptions(
                self.num_points, cfg.instance_semantic_weight_cross_entropy, 0.0, cfg.semantic_ignore_null_classes,
                cfg.semantic_regularization_loss, "nearest" if cfg.semantic_labels_nearest else "bilinear",
            )
            label_map = semantic_map_from_instances(targets).flatten(0, 1)[:, None]
            semantic = semantic_losses(semantic_logits, label_map, options, source, "semantic")
        return LayerResult({"instance": instance, "semantic": semantic}, matches)

    def __call__(
        self, layers: Sequence[InstancePrediction] | Sequence[ObjectPrediction],
        targets: InstanceTargets | PanopticTargets | ObjectTargets, points: PointSource | None = None,
    ) -> dict[str, Tensor]:
        """Named scalar losses: "TotalL" (what to backpropagate: every layer's total, summed) and, detached, the
        original's log names: last layer, and `Aux_*` = mean over the other layers."""
        result = self.layer_losses(layers, targets, points)
        return named_losses(result, panoptic=isinstance(targets, PanopticTargets))


def named_losses(result: LayerResult, panoptic: bool) -> dict[str, Tensor]:
    """"TotalL" and the original trainer's log names (detached) for per-layer losses (SPEC §5.6)."""
    losses = result.losses
    out = {"TotalL": sum(family["total"].sum() for family in losses.values())}
    if "objects" in losses:
        _last_and_aux(out, "VSegDiceL", losses["objects"]["dice"])
        _last_and_aux(out, "VSegCeL", losses["objects"]["ce"])
        return out
    instance, semantic = losses["instance"], losses["semantic"]
    prefix = "PSegI" if panoptic else "ISeg"
    for key, name in (("mask_dice", "DiceL"), ("mask_ce", "CeL"), ("cls", "ClsL")):
        _last_and_aux(out, prefix + name, instance[key])
    if panoptic:
        _last_and_aux(out, "PSegSSegCeL", semantic["ce"])
        if "dice" in semantic:
            _last_and_aux(out, "PSegSSegDiceL", semantic["dice"])
        reg_name = "PSegSSegRegL"
    else:
        _last_and_aux(out, "SSegCeL", semantic["ce"], aux_name="Aux_SSegCe")  # sic: the original's name
        reg_name = "SSegRegL"
    if "reg" in semantic:
        out[reg_name] = semantic["reg"].detach().mean()  # the original logs the mean over all layers, not the last
    return out
