"""Losses: edge cases that must stay finite, AMP inputs, normalisation across ranks, names and dispatch.

Equality with the original is in test_original_parity.py; these use small random inputs.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from tarvis_fast.config import LossConfig, TrainingConfig
from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction
from tarvis_fast.training.losses import (
    IGNORE_INDEX,
    NULL_CLASS_LOGIT,
    TarvisCriterion,
    eliminate_null_classes,
    mean_over_ranks,
    multiclass_dice,
    sample_targets,
    semantic_map_from_instances,
)
from tarvis_fast.training.point_sampling import RandomPoints, ReplayPoints

L, B, T, H, W, C = 3, 2, 2, 32, 32, 4
POINTS = 48
CONFIG = LossConfig(panoptic_instance_num_points=POINTS, panoptic_semantic_num_points=POINTS,
                    semantic_regularization_loss=True, semantic_ignore_null_classes=True)


class RecordingPoints(RandomPoints):
    """Fresh points, kept by name so that a second call can replay them."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(torch.Generator().manual_seed(seed))
        self.drawn: dict[str, Tensor] = {}

    def __call__(self, name, shape, dtype, device):
        self.drawn[name] = super().__call__(name, shape, dtype, device)
        return self.drawn[name]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def instance_layers(queries: int = 5, dtype: torch.dtype = torch.float32, semantic: int = 1 + C,
                    seed: int = 0) -> list[InstancePrediction]:
    g = _gen(seed)
    return [InstancePrediction(
        (3 * torch.randn(B, queries, T, H // 4, W // 4, generator=g)).to(dtype).requires_grad_(),
        torch.randn(B, queries, 1 + C, generator=g).to(dtype).requires_grad_(),
        torch.randn(B, semantic, T, H // 4, W // 4, generator=g).to(dtype).requires_grad_(),
    ) for _ in range(L)]


def instance_targets(counts: tuple[int, ...] = (2, 1), seed: int = 1) -> InstanceTargets:
    g = _gen(seed)
    masks = tuple(torch.rand(n, T, H, W, generator=g) > 0.6 for n in counts)
    classes = tuple(torch.randint(1, C + 1, (n,), generator=g) for n in counts)
    return InstanceTargets(masks, classes)


def object_layers(objects: int = 2, dtype: torch.dtype = torch.float32) -> list[ObjectPrediction]:
    g = _gen(2)
    return [ObjectPrediction(torch.randn(B, objects, T, H // 4, W // 4, generator=g).to(dtype).requires_grad_(),
                             torch.randn(B, 1, T, H // 4, W // 4, generator=g).to(dtype).requires_grad_())
            for _ in range(L)]


def panoptic_targets(instances: InstanceTargets, ignore: Tensor | None = None) -> PanopticTargets:
    semantic = torch.randint(0, C, (B, T, H, W), generator=_gen(3))
    return PanopticTargets(instances, semantic, torch.zeros(B, T, H, W, dtype=torch.bool) if ignore is None else ignore)


def _inputs(layers) -> list[Tensor]:
    return [t for layer in layers for t in vars(layer).values()]


def assert_finite_with_grads(losses: dict[str, Tensor], layers) -> None:
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
    grads = torch.autograd.grad(losses["TotalL"], _inputs(layers), allow_unused=True)
    assert any(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


# --------------------------------------------------------------------------------------------------------------
# Edge cases


@pytest.mark.parametrize("panoptic", [False, True], ids=["vis", "vps"])
def test_no_instance_in_the_batch(panoptic: bool) -> None:
    layers = instance_layers(semantic=C if panoptic else 1 + C)
    targets = instance_targets(counts=(0, 0))
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    losses = criterion(layers, panoptic_targets(targets) if panoptic else targets)
    assert_finite_with_grads(losses, layers)
    prefix = "PSegI" if panoptic else "ISeg"
    assert float(losses[prefix + "CeL"]) == float(losses[prefix + "DiceL"]) == 0.0
    assert float(losses[prefix + "ClsL"]) > 0  # every query is pushed to "no object"


def test_instance_absent_from_frames_and_single_query() -> None:
    targets = instance_targets(counts=(3, 1))
    targets.masks[0][1, 0] = False  # instance 1 of sample 0 absent from frame 0 ...
    targets.masks[1][0] = False     # ... and sample 1's instance from every frame
    layers = instance_layers(queries=1)
    result = TarvisCriterion(CONFIG, num_points=POINTS).layer_losses(layers, targets)
    assert all(len(q) == 1 for layer in result.matches for q, _ in layer)  # one query: one match per sample
    assert_finite_with_grads(TarvisCriterion(CONFIG, num_points=POINTS)(layers, targets), layers)


def test_object_absent_from_frames() -> None:
    masks = torch.rand(B, 2, T, H, W, generator=_gen(4)) > 0.5
    masks[0, 1, 0] = False
    masks[1, :, 1] = False  # no object at all in a frame: the background is the whole frame
    layers = object_layers()
    losses = TarvisCriterion(CONFIG, num_points=POINTS)(layers, ObjectTargets(masks))
    assert set(losses) == {"TotalL", "VSegCeL", "VSegDiceL", "Aux_VSegCeL", "Aux_VSegDiceL"}
    assert_finite_with_grads(losses, layers)


def test_ignored_frame_and_fully_ignored_batch() -> None:
    layers = instance_layers(semantic=C)
    targets = instance_targets()
    ignore = torch.zeros(B, T, H, W, dtype=torch.bool)
    ignore[1, 0] = True
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    assert_finite_with_grads(criterion(layers, panoptic_targets(targets, ignore)), layers)

    everything = criterion.layer_losses(layers, panoptic_targets(targets, torch.ones_like(ignore)))
    # The original divides by the number of points not ignored: 0/0 = NaN. Ours is 0.
    assert torch.equal(everything.losses["semantic"]["ce"], torch.zeros(L))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("task", ["vis", "vps", "vos"])
def test_half_precision_inputs_computed_in_fp32(task: str, dtype: torch.dtype) -> None:
    """A half-precision prediction scores as its fp32 copy would: costs and point losses run in fp32."""
    if task == "vos":
        half, targets = object_layers(dtype=dtype), ObjectTargets(torch.rand(B, 2, T, H, W, generator=_gen(5)) > 0.5)
    else:
        half = instance_layers(dtype=dtype, semantic=C if task == "vps" else 1 + C)
        targets = instance_targets() if task == "vis" else panoptic_targets(instance_targets())
    full = [type(layer)(*(t.detach().float() for t in vars(layer).values())) for layer in half]
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    points = RecordingPoints()
    losses = criterion(half, targets, points)
    assert_finite_with_grads(losses, half)
    assert all(v.dtype == torch.float32 for v in losses.values())
    reference = criterion(full, targets, ReplayPoints(points.drawn))
    for name, value in losses.items():
        assert math.isclose(float(value.detach()), float(reference[name].detach()), rel_tol=1e-5, abs_tol=1e-6), name


# --------------------------------------------------------------------------------------------------------------
# Normalisation, names, dispatch


def test_mean_over_ranks_single_process(tmp_path) -> None:
    assert torch.equal(mean_over_ranks(torch.tensor([3.0])), torch.tensor([3.0]))
    # An initialised group of one rank takes the all-reduce path and gives the same.
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        count = torch.tensor([3.0])
        assert torch.equal(mean_over_ranks(count), torch.tensor([3.0])) and count.item() == 3.0
    finally:
        dist.destroy_process_group()


def test_instance_count_is_averaged_over_ranks() -> None:
    """Mask losses are divided by the instance count averaged over ranks: a second rank with no instance
    (mean = half this rank's count) doubles them; classification is unaffected."""
    layers, targets, points = instance_layers(), instance_targets(), RecordingPoints()
    alone = TarvisCriterion(CONFIG, num_points=POINTS).layer_losses(layers, targets, points).losses["instance"]
    two_ranks = TarvisCriterion(CONFIG, num_points=POINTS, reduce_count=lambda count: count / 2)
    paired = two_ranks.layer_losses(layers, targets, ReplayPoints(points.drawn)).losses["instance"]
    torch.testing.assert_close(paired["mask_ce"], 2 * alone["mask_ce"])
    torch.testing.assert_close(paired["mask_dice"], 2 * alone["mask_dice"])
    torch.testing.assert_close(paired["cls"], alone["cls"])


def test_names_total_and_aux() -> None:
    layers, targets = instance_layers(), instance_targets()
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    points = RecordingPoints()
    result = criterion.layer_losses(layers, targets, points)
    losses = criterion(layers, targets, ReplayPoints(points.drawn))
    assert set(losses) == {"TotalL", "ISegCeL", "ISegDiceL", "ISegClsL", "Aux_ISegCeL", "Aux_ISegDiceL",
                           "Aux_ISegClsL", "SSegCeL", "Aux_SSegCe", "SSegRegL"}
    instance, semantic = result.losses["instance"], result.losses["semantic"]
    torch.testing.assert_close(losses["TotalL"], instance["total"].sum() + semantic["total"].sum())
    torch.testing.assert_close(losses["ISegCeL"], instance["mask_ce"][-1])
    torch.testing.assert_close(losses["Aux_ISegCeL"], instance["mask_ce"][:-1].mean())
    torch.testing.assert_close(losses["SSegRegL"], semantic["reg"].mean())


def test_from_config() -> None:
    training = TrainingConfig(num_sampled_points_for_mask_loss=321)
    criterion = TarvisCriterion.from_config(training)
    assert criterion.num_points == 321 and criterion.config is training.losses


def test_same_generator_seed_same_losses() -> None:
    layers, targets = instance_layers(), instance_targets()
    first = TarvisCriterion(CONFIG, num_points=POINTS, generator=_gen(7))(layers, targets)
    second = TarvisCriterion(CONFIG, num_points=POINTS, generator=_gen(7))(layers, targets)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_prediction_and_target_types_must_agree() -> None:
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    with pytest.raises(TypeError, match="ObjectPrediction"):
        criterion(instance_layers(), ObjectTargets(torch.zeros(B, 2, T, H, W, dtype=torch.bool)))
    with pytest.raises(TypeError, match="InstancePrediction"):
        criterion(object_layers(), instance_targets())
    with pytest.raises(ValueError, match="do not fit"):
        criterion(object_layers(objects=3), ObjectTargets(torch.zeros(B, 2, T, H, W, dtype=torch.bool)))


def test_targets_must_cover_the_image_of_the_logits() -> None:
    """Logits and targets are read at the same normalised points: targets of another size than 4x the logits'
    (an unpadded clip's) would be read stretched, so the criterion refuses them."""
    criterion = TarvisCriterion(CONFIG, num_points=POINTS)
    with pytest.raises(ValueError, match="pad the targets"):
        criterion(object_layers(), ObjectTargets(torch.ones(B, 2, T, H - 8, W, dtype=torch.bool)))
    with pytest.raises(ValueError, match="pad the targets"):
        masks = tuple(torch.ones(1, T, H, W - 4, dtype=torch.bool) for _ in range(B))
        criterion(instance_layers(), InstanceTargets(masks, tuple(torch.tensor([1]) for _ in range(B))))


def test_targets_are_validated() -> None:
    masks = torch.zeros(1, T, H, W, dtype=torch.bool)
    with pytest.raises(ValueError, match="bool"):
        InstanceTargets((masks.float(),), (torch.tensor([1]),))
    with pytest.raises(ValueError, match=">= 1"):
        InstanceTargets((masks,), (torch.tensor([0]),))
    with pytest.raises(ValueError, match="one mask tensor and one class tensor"):
        InstanceTargets((masks,), ())
    instances = InstanceTargets((masks,), (torch.tensor([2]),))
    with pytest.raises(ValueError, match="semantic class ids"):
        PanopticTargets(instances, -torch.ones(1, T, H, W, dtype=torch.int64), torch.zeros(1, T, H, W, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one object"):
        ObjectTargets(torch.zeros(B, 0, T, H, W, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------------------
# Pieces


def test_semantic_map_paints_smaller_instances_last() -> None:
    big = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    big[..., :6, :6] = True
    small = torch.zeros_like(big)
    small[..., 2:4, 2:4] = True
    semantic = semantic_map_from_instances(InstanceTargets((torch.cat([small, big]),), (torch.tensor([4, 2]),)))
    assert semantic[0, 0, 3, 3] == 4 and semantic[0, 0, 0, 0] == 2 and semantic[0, 0, 7, 7] == 0


def test_bilinear_labels_quirk_and_nearest_fix() -> None:
    """The original reads VIS class ids bilinearly and truncates: between classes 0 and 3 it invents 1 and 2."""
    label_map = torch.zeros(1, 1, 8, 8)
    label_map[..., 4:] = 3.0
    points = torch.rand(1, 1, 4000, 2, generator=_gen(8))
    bilinear = sample_targets(label_map, points, None, "bilinear").to(torch.int64)
    nearest = sample_targets(label_map, points, None, "nearest").to(torch.int64)
    assert set(bilinear.unique().tolist()) == {0, 1, 2, 3}
    assert set(nearest.unique().tolist()) == {0, 3}


def test_nearest_labels_flag_changes_only_the_vis_semantic_loss() -> None:
    layers, targets, points = instance_layers(), instance_targets(), RecordingPoints()
    quirk = TarvisCriterion(CONFIG, num_points=POINTS)(layers, targets, points)
    fixed = TarvisCriterion(replace(CONFIG, semantic_labels_nearest=True), num_points=POINTS)(
        layers, targets, ReplayPoints(points.drawn))
    assert all(torch.equal(quirk[k], fixed[k]) for k in quirk if k.startswith(("ISeg", "Aux_ISeg")))
    assert not torch.equal(quirk["SSegCeL"], fixed["SSegCeL"])


def test_null_classes_are_absent_and_never_predicted() -> None:
    logits = torch.zeros(1, 1, 4, 3)
    logits[0, 0, 2] = 5.0  # class 2 wins at every point
    labels = torch.tensor([[[0, IGNORE_INDEX, 0]]])
    out = eliminate_null_classes(logits, labels)
    assert (out[0, 0, 1] == NULL_CLASS_LOGIT).all() and (out[0, 0, 3] == NULL_CLASS_LOGIT).all()
    assert torch.equal(out[0, 0, [0, 2]], logits[0, 0, [0, 2]])  # present (0) and predicted (2) classes kept


def test_multiclass_dice_ignores_ignored_points_and_class_zero() -> None:
    labels = torch.tensor([[[1, 2, 0, IGNORE_INDEX]]])
    perfect = 50 * torch.nn.functional.one_hot(labels.clamp(min=0), 3).movedim(-1, 2).double()
    perfect[..., 3] = torch.tensor([0.0, 0.0, 50.0])  # an ignored point predicted anything: no effect
    assert float(multiclass_dice(perfect, labels)) < 1e-12
    nothing = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    nothing[:, :, 0] = 50.0  # everything class 0, which the dice leaves out: numerator 0 -> loss 0 (quirk)
    assert float(multiclass_dice(nothing, torch.zeros(1, 1, 4, dtype=torch.int64))) == 0.0
