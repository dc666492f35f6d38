"""The data-trainer contract: ClipSample checks and collate into typed targets."""
from __future__ import annotations

import pytest
import torch

from tarvis_fast.data.sample import ClipSample, collate
from tarvis_fast.data.targets import InstanceTargets, ObjectTargets, PanopticTargets
from tarvis_fast.tasks import Task

T, H, W = 2, 8, 12


def sample(task: Task, n: int = 2, **kwargs) -> ClipSample:
    masks = torch.zeros(n, T, H, W, dtype=torch.bool)
    masks[:, :, 2:5, 3:6] = True
    extra = {Task.VIS: {"classes": torch.arange(1, n + 1)},
             Task.VPS: {"classes": torch.arange(1, n + 1), "semantic": torch.zeros(T, H, W, dtype=torch.int64),
                        "ignore": torch.zeros(T, H, W, dtype=torch.bool)},
             Task.VOS: {}, Task.PET: {"points": torch.full((n, 2), 0.3)}}[task]
    fields = {"masks": masks, **extra, **kwargs}
    return ClipSample("D", task, torch.zeros(T, 3, H, W, dtype=torch.uint8), **fields)


def test_collate_gives_each_task_its_targets_and_references():
    vis = collate([sample(Task.VIS, 1), sample(Task.VIS, 3)])
    assert isinstance(vis.targets, InstanceTargets) and vis.images.shape == (2, T, 3, H, W)
    assert vis.images.dtype == torch.float32 and [m.shape[0] for m in vis.targets.masks] == [1, 3]
    vps = collate([sample(Task.VPS)])
    assert isinstance(vps.targets, PanopticTargets) and vps.targets.semantic.shape == (1, T, H, W)
    vos = collate([sample(Task.VOS), sample(Task.VOS)])
    assert isinstance(vos.targets, ObjectTargets) and vos.reference_masks.shape == (2, 2, 1, H, W)
    assert torch.equal(vos.reference_masks[:, :, 0], vos.targets.masks[:, :, 0]) and vos.reference_points is None
    pet = collate([sample(Task.PET)])
    assert pet.reference_points.shape == (1, 2, 2) and pet.reference_masks is None


def test_a_pet_batch_can_give_its_first_objects_by_their_masks():
    points = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    mixed = collate([sample(Task.PET, 3, points=points)] * 2, num_point_objects=1)
    assert mixed.task is Task.VOS and mixed.targets.masks.shape[1] == 3
    assert torch.equal(mixed.reference_masks, mixed.targets.masks[:, :2, :1])
    assert torch.equal(mixed.reference_points, points[None, 2:].expand(2, 1, 2))
    masks_only = collate([sample(Task.PET, 3, points=points)], num_point_objects=0)
    assert masks_only.task is Task.VOS and masks_only.reference_points is None
    points_only = collate([sample(Task.PET, 3, points=points)], num_point_objects=3)
    assert points_only.task is Task.PET and points_only.reference_masks is None
    for task, count in ((Task.VOS, 1), (Task.PET, 4), (Task.PET, -1)):
        with pytest.raises(ValueError, match="point objects"):
            collate([sample(task, 3, **({"points": points} if task is Task.PET else {}))], num_point_objects=count)


def test_bad_samples_and_mixed_batches_are_refused():
    with pytest.raises(ValueError, match="needs classes"):
        sample(Task.VIS, classes=None)
    with pytest.raises(ValueError, match="has no points"):
        sample(Task.VOS, points=torch.zeros(2, 2))
    hidden = torch.zeros(1, T, H, W, dtype=torch.bool)
    hidden[0, 1, 0, 0] = True
    with pytest.raises(ValueError, match="visible on the reference frame"):
        sample(Task.VOS, 1, masks=hidden)
    with pytest.raises(ValueError, match="one dataset and task"):
        collate([sample(Task.VOS), sample(Task.PET)])
    with pytest.raises(ValueError, match="one object count"):
        collate([sample(Task.VOS, 1), sample(Task.VOS, 2)])
