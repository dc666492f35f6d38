"""The loader: one dataset, task and object count per chunk on every rank; PET mixed into VOS batches per object;
the same batches after a resume and with workers; accumulation steps from the flags; padding of clips of several
sizes into one batch."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.own_data import make_scenes, own_datasets

from tarvis_fast.config import Config, build_config
from tarvis_fast.data.loader import build_train_loader, collate_padded
from tarvis_fast.data.points import points_from_masks
from tarvis_fast.data.sample import ClipSample
from tarvis_fast.tasks import Task

CHUNK = 2


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("mix")
    datasets = own_datasets(root, make_scenes(2), [40, 48])
    training = {"dataset_list": list(datasets), "dataset_weights": [0.4, 0.3, 0.3], "batch_size": 4,
                "num_iterations": 12, "sample_chunking_factor": CHUNK, "point_vos_task_sample_likelihood": 0.5}
    return build_config([("test", {"datasets": datasets, "training": training})])


def _signature(batch) -> tuple:
    return batch.dataset, batch.task, tuple(batch.images.shape), tuple(m["source"] for m in batch.meta), \
        tuple(tuple(m["frames"]) for m in batch.meta)


def test_ranks_share_dataset_task_and_object_count_per_chunk(cfg):
    loaders = [build_train_loader(cfg, rank=r, world_size=2, micro_batch_size=1) for r in range(2)]
    assert loaders[0].accumulation_steps == 2 and len(loaders[0]) == 24
    runs = [list(loader) for loader in loaders]
    seen = set()
    for (it0, ms0, b0), (it1, ms1, b1) in zip(*runs):
        assert (it0, ms0) == (it1, ms1)
        assert (b0.dataset, b0.task) == (b1.dataset, b1.task)
        if b0.task.guided_by_objects:
            assert b0.targets.masks.shape[1] == b1.targets.masks.shape[1]
        seen.add(b0.task)
    for run in runs:  # held for a chunk of iterations (VOS and PET: one object-guided kind, see below)
        plans = {}
        for iteration, _, batch in run:
            guided = batch.task.guided_by_objects
            plan = (batch.dataset, "guided" if guided else batch.task, batch.targets.masks.shape[1] if guided else None)
            assert plans.setdefault(iteration // CHUNK, plan) == plan
    assert len(seen) >= 2
    # the ranks draw different clips
    assert [_signature(b) for *_, b in runs[0]] != [_signature(b) for *_, b in runs[1]]


def test_vos_batches_give_a_share_of_their_last_objects_by_points(tmp_path):
    """As the original's object encoder: per micro-step, each object is a point object with the PET likelihood; the
    batch gives its last ones by points (taken from the frame-0 masks), the same count on every rank."""
    datasets = own_datasets(tmp_path, make_scenes(2), [40])
    training = {"dataset_list": ["MY_VOS"], "dataset_weights": [1.0], "batch_size": 4, "num_iterations": 30,
                "point_vos_task_sample_likelihood": 0.3}
    cfg = build_config([("test", {"datasets": {"MY_VOS": datasets["MY_VOS"]}, "training": training})])
    runs = [list(build_train_loader(cfg, rank=r, world_size=2, micro_batch_size=2)) for r in range(2)]
    point_objects, objects, mixed = 0, 0, 0
    for (*_, a), (*_, b) in zip(*runs):
        counts = [(0 if x.reference_masks is None else x.reference_masks.shape[1],
                   0 if x.reference_points is None else x.reference_points.shape[1]) for x in (a, b)]
        assert counts[0] == counts[1] and sum(counts[0]) == a.targets.masks.shape[1]
        num_masks, num_points = counts[0]
        assert a.task is (Task.VOS if num_masks else Task.PET)
        if num_masks:
            assert torch.equal(a.reference_masks, a.targets.masks[:, :num_masks, :1])
        if num_points:
            torch.testing.assert_close(a.reference_points, points_from_masks(a.targets.masks[:, num_masks:, 0]))
        point_objects, objects, mixed = point_objects + num_points, objects + num_masks + num_points, \
            mixed + bool(num_masks and num_points)
    assert mixed and 0.15 < point_objects / objects < 0.45, (mixed, point_objects, objects)


def test_resume_and_workers_give_the_same_batches(cfg):
    full = [(it, ms, _signature(b), b.images) for it, ms, b in build_train_loader(
        cfg, rank=1, world_size=2, micro_batch_size=1)]
    # Workers forked from a process whose OpenCV and OpenMP thread pools have run used to deadlock on start-up
    # (as in the full suite, or a trainer): run both pools here first.
    cv2.resize(np.zeros((1200, 1200), np.float32), (600, 600))
    torch.ones(512, 512) @ torch.ones(512, 512)
    resumed = [(it, ms, _signature(b), b.images) for it, ms, b in build_train_loader(
        cfg, rank=1, world_size=2, micro_batch_size=1, start_iteration=5, num_workers=2)]
    tail = [entry for entry in full if entry[0] >= 5]
    assert [e[:3] for e in resumed] == [e[:3] for e in tail]
    assert all(torch.equal(a[3], b[3]) for a, b in zip(resumed, tail))


def test_accumulation_steps_must_divide():
    cfg = build_config([("test", {"training": {"batch_size": 8, "dataset_list": ["DAVIS"], "dataset_weights": [1.0]}})])
    with pytest.raises(ValueError, match=r"batch_size \(8\).*world_size \(3\).*micro_batch_size \(1\)"):
        build_train_loader(cfg, rank=0, world_size=3, micro_batch_size=1)


def test_clips_of_several_sizes_are_padded_into_one_batch():
    def sample(h: int, w: int) -> ClipSample:
        masks = torch.zeros(1, 2, h, w, dtype=torch.bool)
        masks[:, :, 1:3, 1:3] = True
        return ClipSample("X", Task.PET, torch.zeros(2, 3, h, w, dtype=torch.uint8), masks,
                          points=torch.tensor([[2.5 / h, 2.5 / w]]))
    batch = collate_padded([sample(8, 10), sample(6, 12)])
    assert batch.images.shape == (2, 2, 3, 8, 12)
    assert (batch.images[1, :, :, 6:] == 128).all() and not batch.targets.masks[1, :, :, 6:].any()
    # points keep their pixel: (2 + 0.5) / 6 of 6 rows is (2 + 0.5) / 8 of the padded 8
    assert torch.allclose(batch.reference_points[1], torch.tensor([[2.5 / 8, 2.5 / 12]]))
