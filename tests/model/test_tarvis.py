"""The task-aware forward on a tiny model: output shapes per task, padding, determinism, gradients, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tarvis_fast.model import InstancePrediction, ObjectPrediction, ObjectReferences, Task, TarViS, padded_size

from helpers.tiny import DATASETS, box_masks, clip, tiny_model

T, H, W = 2, 64, 128  # logits at 16 x 32


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def mixed_references(batch: int = 1, height: int = H, width: int = W) -> ObjectReferences:
    """Two mask objects in frame 0 and one point object in frame 1."""
    return ObjectReferences(
        masks=box_masks(batch, [(4, 8, 20, 40), (30, 60, 60, 110)], 1, height, width),
        mask_frames=torch.tensor([0]),
        points=torch.tensor([[[0.3, 0.7]]]).repeat(batch, 1, 1),
        point_frames=torch.ones(batch, 1, dtype=torch.int64),
    )


def test_vis_with_40_classes(model) -> None:
    out = model(clip(batch=2), Task.VIS, dataset="YOUTUBE_VIS")
    assert out.task is Task.VIS and out.image_size == (H, W)
    assert len(out.layers) == 4  # the initial queries' prediction + one per decoder layer
    for layer in out.layers:
        assert isinstance(layer, InstancePrediction)
        assert layer.mask_logits.shape == (2, 10, T, 16, 32)
        assert layer.class_logits.shape == (2, 10, 41)
        assert layer.semantic_logits.shape == (2, 41, T, 16, 32)  # background + 40 classes


def test_vps_semantic_head_has_no_background(model) -> None:
    out = model(clip(), "panoptic_seg", dataset="KITTI_STEP")
    assert out.final.class_logits.shape == (1, 10, 20)
    assert out.final.semantic_logits.shape == (1, 19, T, 16, 32)


@pytest.mark.parametrize("kind, num_objects", [("masks", 2), ("points", 1), ("mixed", 3)])
def test_vos_objects_from_masks_points_or_both(model, kind: str, num_objects: int) -> None:
    refs = mixed_references(batch=2)
    if kind == "masks":
        refs.points = refs.point_frames = None
    elif kind == "points":
        refs.masks = refs.mask_frames = None
    out = model(clip(batch=2), Task.VOS, objects=refs)
    assert out.task is Task.VOS and len(out.layers) == 4
    for layer in out.layers:
        assert isinstance(layer, ObjectPrediction)
        assert layer.object_logits.shape == (2, num_objects, T, 16, 32)
        assert layer.background_logits.shape == (2, 1, T, 16, 32)


def test_each_object_is_the_max_over_its_queries(model) -> None:
    # Recompute the decoder's raw per-query logits and condense them by hand: 8 queries per mask object in
    # eval mode (2 x 4), 1 per point object, 16 background queries first.
    model.eval()
    images, refs = clip(), mixed_references()
    captured = {}
    handle = model.decoder.register_forward_hook(lambda m, args, out: captured.update(raw=out))
    try:
        out = model(images, Task.VOS, objects=refs)
    finally:
        handle.remove()
        model.train()
    raw = captured["raw"][-1].mask_logits  # (1, 16 + 2*8 + 1, T, h, w)
    assert raw.shape[1] == 16 + 2 * 8 + 1
    torch.testing.assert_close(out.final.background_logits[:, 0], raw[:, :16].amax(1), rtol=0, atol=0)
    expected = torch.stack([raw[:, 16:24].amax(1), raw[:, 24:32].amax(1), raw[:, 32]], 1)
    torch.testing.assert_close(out.final.object_logits, expected, rtol=0, atol=0)


def test_queries_per_mask_object_is_a_parameter_of_the_call(model) -> None:
    refs = mixed_references()
    refs.queries_per_mask_object = 3
    captured = {}
    handle = model.decoder.register_forward_hook(lambda m, args, out: captured.update(queries=args[2]))
    try:
        model(clip(), Task.VOS, objects=refs)
    finally:
        handle.remove()
    assert captured["queries"].groups == (("background_vos", 16), ("vos", 2 * 3 + 1))


def test_images_are_padded_right_and_bottom_with_grey(model) -> None:
    # A 50x100 clip gives the same logits as the same clip padded by hand to 64x128 with value 128, and VOS
    # references given at the image size (masks; points relative to the image) match their padded forms.
    model.eval()
    small = clip(height=50, width=100)
    assert padded_size(50, 100) == (64, 128)
    padded = F.pad(small, (0, 28, 0, 14), value=128.0)
    with torch.no_grad():
        a = model(small, Task.VIS, dataset="YOUTUBE_VIS").final
        b = model(padded, Task.VIS, dataset="YOUTUBE_VIS").final
        assert a.mask_logits.shape == (1, 10, T, 16, 32)
        torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=0)
        torch.testing.assert_close(a.class_logits, b.class_logits, rtol=0, atol=0)

        refs_small = mixed_references(height=50, width=100)
        refs_padded = mixed_references(height=50, width=100)
        refs_padded.masks = F.pad(refs_padded.masks, (0, 28, 0, 14))
        refs_padded.points = refs_small.points * torch.tensor([50 / 64, 100 / 128])
        a = model(small, Task.VOS, objects=refs_small).final
        b = model(padded, Task.VOS, objects=refs_padded).final
        torch.testing.assert_close(a.object_logits, b.object_logits, rtol=0, atol=0)
    model.train()


def test_eval_mode_is_deterministic(model) -> None:
    model.eval()
    # A mask larger than the inference cap of 16384 points per sub-mask exercises the subsampling too.
    refs = mixed_references(batch=1, height=128, width=192)
    refs.masks[:, 0, :, :, :] = True
    refs.masks[:, 1] = False
    refs.masks[:, 1, :, 0:8, 0:8] = True
    refs.masks[:, 0, :, 0:8, 0:8] = False
    refs.queries_per_mask_object = 1
    images = clip(height=128, width=192)
    with torch.no_grad():
        runs = [model(images, Task.VOS, objects=refs).final.object_logits for _ in range(2)]
        vis = [model(images, Task.VIS, dataset="KITTI_STEP").final.class_logits for _ in range(2)]
    model.train()
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(vis[0], vis[1])


def test_gradients_reach_every_parameter_that_trains() -> None:
    # One VIS, one VPS and one mixed VOS step cover every query group. Only these get no gradient, in the
    # original too: the unused "free" mask MLP, the VOS projection layers (VOS has no class logits) and row 1
    # of the VOS background table (its inits come from the object encoder).
    model = tiny_model()
    # The deformable attention starts with zero weights on its query (offsets and weights are biases only),
    # so at initialisation nothing flows back to the query's level embedding; a trained model has them.
    for name, param in model.named_parameters():
        if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
            torch.nn.init.normal_(param, std=0.01)
    images = clip(batch=2)
    outputs = [
        model(images, Task.VIS, dataset="YOUTUBE_VIS"),
        model(images, Task.VPS, dataset="KITTI_STEP"),
        model(images, Task.VOS, objects=mixed_references(batch=2)),
    ]
    loss = 0
    for out in outputs:
        for layer in out.layers:
            loss = loss + sum(t.float().square().mean() for t in vars(layer).values())
    loss.backward()

    unused = ("decoder.mask_embeds.free.", "decoder.proj_layers.vos.", "decoder.proj_layers.background_vos.")
    no_grad = sorted(name for name, p in model.named_parameters()
                     if not name.startswith(unused) and (p.grad is None or not p.grad.abs().sum() > 0))
    assert no_grad == []
    assert all(p.grad is None for name, p in model.named_parameters() if name.startswith(unused))
    tables = model.embedding_container
    for name, table in tables.named_parameters():
        rows_with_grad = table.grad.abs().sum(1) > 0
        expected = torch.ones_like(rows_with_grad)
        if name == "_background_vos_queries":
            expected[1:] = False
        assert torch.equal(rows_with_grad, expected), name


def test_under_autocast_outputs_are_finite() -> None:
    model = tiny_model().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip(), Task.VOS, objects=mixed_references())
        vis = model(clip(), Task.VIS, dataset="YOUTUBE_VIS")
    assert torch.isfinite(out.final.object_logits.float()).all()
    assert torch.isfinite(vis.final.class_logits.float()).all()


@pytest.mark.parametrize("call, message", [
    (lambda m: m(clip()[0], Task.VIS, dataset="YOUTUBE_VIS"), r"images must be a float \(B, T, 3, H, W\)"),
    (lambda m: m(clip(), Task.VIS), "VIS/VPS need `dataset`"),
    (lambda m: m(clip(), Task.VIS, dataset="COCO"), "no semantic queries for dataset 'COCO'"),
    (lambda m: m(clip(), Task.VOS), "Task.VOS needs `objects`"),
    (lambda m: m(clip(), Task.VIS, dataset="YOUTUBE_VIS", objects=mixed_references()), "takes no `objects`"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences()), "give masks, points or both"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences(
        masks=torch.zeros(1, 1, 1, H, W, dtype=torch.bool), mask_frames=torch.tensor([0]))),
     "object 0 of batch element 0 is empty"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences(
        masks=box_masks(1, [(0, 0, 4, 4)], 1, 32, 32), mask_frames=torch.tensor([0]))),
     r"masks are \(32, 32\); expected the image size \(64, 128\)"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences(
        masks=box_masks(1, [(0, 0, 4, 4)], 1, H, W), mask_frames=torch.tensor([2]))),
     r"mask_frames must increase within \[0, 2\)"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences(
        points=torch.tensor([[[0.5, 1.5]]]), point_frames=torch.tensor([[0]]))), r"in \[0, 1\]"),
    (lambda m: m(clip(), Task.VOS, objects=ObjectReferences(points=torch.tensor([[[0.5, 0.5]]]))),
     "point_frames must be int64"),
])
def test_bad_input_is_named(model, call, message: str) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        call(model)


def test_semantic_queries_are_swapped_per_dataset(model) -> None:
    # The same model serves both datasets: the class logits of a call are dot products with that dataset's
    # semantic query rows only.
    assert model.datasets == sorted(DATASETS)
    with torch.no_grad():
        a = model(clip(), Task.VIS, dataset="YOUTUBE_VIS").final.class_logits
        model.embedding_container._semantic_queries[1:20].add_(1.0)  # KITTI_STEP rows (alphabetically first)
        b = model(clip(), Task.VIS, dataset="YOUTUBE_VIS").final.class_logits
        model.embedding_container._semantic_queries[1:20].sub_(1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sub_modules_given_are_used_as_they_are(model) -> None:
    parts = model.backbone.fpn, model.embedding_container, model.decoder, model.vos_query_extractor
    rebuilt = TarViS(model.backbone.backbone, *parts)
    assert (rebuilt.backbone.fpn, rebuilt.embedding_container, rebuilt.decoder, rebuilt.vos_query_extractor) == parts
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(clip(), Task.VPS, dataset="KITTI_STEP").final.mask_logits,
                                   model(clip(), Task.VPS, dataset="KITTI_STEP").final.mask_logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="either `semantic_classes`"):
        TarViS(model.backbone.backbone, *parts, semantic_classes=DATASETS)
    with pytest.raises(ValueError, match="either `semantic_classes`"):
        TarViS(model.backbone.backbone)
