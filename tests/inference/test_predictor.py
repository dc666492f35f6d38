"""`VideoPredictor` on a tiny random TarViS: the real DAVIS clip through VOS (OSVOS frame 0 as the reference) and
PET (points inside those objects), VIS and VPS on synthetic frames, every kind of frame input, and bad arguments.

A random network's masks are arbitrary: the tests check structure (every frame once, in order, at the video's
size, ids and classes from the right sets) and consistency (the same frames give the same results whichever way
they are passed in).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

import tarvis_fast
from tarvis_fast.config import Config, load_config
from tarvis_fast.formats.davis import read_label_png
from tarvis_fast.datasets import vocabulary
from tarvis_fast.inference.predictor import VideoPredictor, count_video_frames
from tarvis_fast.inference.video import FrameResult, OverlayVideoWriter, read_image_rgb
from helpers.tiny import tiny_model

FAST = dict(clip_length=4, frame_overlap=2, min_dim=64)  # clips 0-3, 2-5; 480x854 runs at 64x114 (padded 64x128)


@pytest.fixture(scope="module")
def predictor() -> VideoPredictor:
    return VideoPredictor.from_model(tiny_model(kernel_backend="torch"), Config(), device="cpu")


@pytest.fixture(scope="module")
def davis(davis_clip: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Every 8th frame of horsejump-high (6 frames) and OSVOS's frame-0 mask (ids 1 and 2)."""
    frames = [read_image_rgb(davis_clip / "JPEGImages" / "horsejump-high" / f"{t:05d}.jpg") for t in range(0, 48, 8)]
    return frames, read_label_png(davis_clip / "osvos" / "horsejump-high" / "00000.png")


@pytest.fixture(scope="module")
def davis_vos(predictor, davis) -> list[tuple[int, FrameResult]]:
    frames, first = davis
    return list(predictor.segment(frames, "vos", masks={0: first}, **FAST))


def check_frames(results: list[tuple[int, FrameResult]], num_frames: int, size: tuple[int, int]) -> None:
    assert [index for index, _ in results] == list(range(num_frames))
    for index, result in results:
        assert result.frame_index == index and result.masks.shape == (len(result.object_ids), *size)
        assert result.masks.dtype == bool and len(set(result.object_ids)) == len(result.object_ids)
        assert len(result.class_ids) == len(result.class_names) == len(result.scores) == len(result.object_ids)
        ids = result.id_map()
        for object_id, mask in zip(result.object_ids, result.masks):
            assert (ids == object_id).sum() <= mask.sum()  # painted only where its mask is


def test_vos_on_the_real_davis_clip(davis, davis_vos):
    frames, first = davis
    check_frames(davis_vos, len(frames), first.shape)
    seen = set()
    for _, result in davis_vos:
        assert set(result.object_ids) <= {1, 2} and result.class_ids == [None] * len(result.object_ids)
        seen |= set(result.object_ids)
    assert seen, "a random network still gives some pixel a positive logit"


def test_frame_inputs_agree(predictor, davis, davis_vos, tmp_path):
    frames, first = davis
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # lossless

    for source in (folder, (f for f in frames)):  # a folder; an iterator of unknown length (spooled)
        for (i, got), (j, want) in zip(predictor.segment(source, "vos", masks={0: first}, **FAST), davis_vos,
                                       strict=True):
            assert i == j and got.object_ids == want.object_ids
            np.testing.assert_array_equal(got.masks, want.masks)


def test_a_video_file_is_counted(predictor, tmp_path):
    frames = [np.full((64, 96, 3), 20 * t, np.uint8) for t in range(7)]
    path = tmp_path / "clip.avi"
    with OverlayVideoWriter(path, fps=5) as writer:
        for frame in frames:
            writer.write(frame)
    assert count_video_frames(path) == 7
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 20:50] = 3
    results = list(predictor.segment(path, "vos", masks={0: mask}, clip_length=4, frame_overlap=2))
    check_frames(results, 7, (64, 96))
    assert all(set(r.object_ids) <= {3} for _, r in results)


def test_pet_on_the_real_davis_clip(predictor, davis):
    frames, first = davis
    points = {}
    for object_id in (1, 2):  # the pixel deepest inside each OSVOS object
        y, x = np.unravel_index(np.argmax(distance_transform_edt(first == object_id)), first.shape)
        points[object_id] = (float(x), float(y))
    results = list(predictor.segment(frames, "pet", points=points, **FAST))
    check_frames(results, len(frames), first.shape)
    assert all(set(r.object_ids) <= {1, 2} for _, r in results)


def synthetic_frames(num_frames: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (72, 100, 3), dtype=np.uint8) for _ in range(num_frames)]


def test_vis_gives_ranked_tracks_with_class_names(predictor):
    names = vocabulary("youtube_vis").names
    results = list(predictor.segment(synthetic_frames(), "vis", vocabulary="youtube_vis", clip_length=3,
                                     frame_overlap=1))
    check_frames(results, 4, (72, 100))
    for _, result in results:
        assert result.semantic is None and all(1 <= i <= 10 for i in result.object_ids)
        assert [names[c] for c in result.class_ids] == result.class_names
        ranked = sorted(zip(result.object_ids, result.scores))
        assert [s for _, s in ranked] == sorted(result.scores, reverse=True)  # rank 1 is the best score


def test_vps_gives_things_over_a_semantic_map(predictor):
    vocab = vocabulary("kitti_step")
    results = list(predictor.segment(synthetic_frames(), "vps", vocabulary="KITTI_STEP", clip_length=3,
                                     frame_overlap=1))
    check_frames(results, 4, (72, 100))
    for _, result in results:
        assert result.semantic.shape == (72, 100) and result.semantic.max() < len(vocab.names)
        assert set(result.class_ids) <= set(vocab.thing_classes) and result.scores == [None] * len(result.class_ids)
        for class_id, mask in zip(result.class_ids, result.masks):
            assert (result.semantic[mask] == class_id).all()  # a painted thing sets the class of its pixels


def test_bad_arguments_are_named(predictor):
    frames = synthetic_frames(3)
    ids = np.zeros((72, 100), np.int32)
    ids[5:9, 5:9] = 1

    def segment(*args, **kwargs):
        return predictor.segment(frames, *args, **kwargs)

    with pytest.raises(ValueError, match="unknown task .track.; choose from vis, vps, vos, pet"):
        segment("track")
    with pytest.raises(ValueError, match="task 'vos' needs masks="):
        segment("vos")
    with pytest.raises(ValueError, match="task 'pet' takes points, not masks"):
        segment("pet", points={1: (3, 3)}, masks={0: ids})
    with pytest.raises(ValueError, match="task 'vis' needs vocabulary= one of youtube_vis, ovis"):
        segment("vis", vocabulary="kitti_step")
    with pytest.raises(ValueError, match="no semantic queries for OVIS"):
        segment("vis", vocabulary="ovis")
    with pytest.raises(ValueError, match="task 'vos' is class-agnostic"):
        segment("vos", masks={0: ids}, vocabulary="ovis")
    with pytest.raises(ValueError, match="task 'vps' takes no masks"):
        segment("vps", vocabulary="kitti_step", masks={0: ids})
    with pytest.raises(ValueError, match=r"masks\[5\]: frame index out of range: the video has frames 0..2"):
        segment("vos", masks={5: ids})
    with pytest.raises(ValueError, match=r"masks\[0\]: must be an \(H, W\) = \(72, 100\) integer id map"):
        segment("vos", masks={0: ids[:10]})
    with pytest.raises(ValueError, match=r"masks\[0\]\[2\]: must be an \(H, W\) = \(72, 100\) bool mask"):
        segment("vos", masks={0: {2: ids}})
    with pytest.raises(ValueError, match=r"masks\[0\]: object 2 has an empty mask"):
        segment("vos", masks={0: {2: np.zeros((72, 100), bool)}})
    with pytest.raises(ValueError, match=r"masks\[0\]: holds no object"):
        segment("vos", masks={0: np.zeros((72, 100), np.uint8)})
    with pytest.raises(ValueError, match=r"points\[1\]: \(x, y\) = \(100.0, 3.0\) lies outside the 100x72"):
        segment("pet", points={1: (100, 3)})
    with pytest.raises(ValueError, match=r"points\[1\]: frame 4 is out of range"):
        segment("pet", points={1: (4, (3, 3))})
    with pytest.raises(ValueError, match=r"points\[2\]: give \(x, y\) or \(frame index, \(x, y\)\)"):
        segment("pet", points={2: "here"})
    with pytest.raises(ValueError, match="frames: the video has no frames"):
        predictor.segment([], "vos", masks={0: ids})


def test_exported_from_the_package():
    assert tarvis_fast.VideoPredictor is VideoPredictor


def test_from_checkpoint_reads_the_config_beside_it(checkpoint, tmp_path):
    predictor = VideoPredictor.from_checkpoint(checkpoint, device="cpu")
    assert predictor.cfg == load_config(checkpoint.parent / "config.yaml") and predictor.device.type == "cpu"
    assert not predictor.runner.model.training
    mask = np.zeros((72, 100), np.uint8)
    mask[20:40, 30:60] = 1
    results = list(predictor.segment(synthetic_frames(), "vos", masks={0: mask}, clip_length=3, frame_overlap=1))
    check_frames(results, 4, (72, 100))
    (tmp_path / "model.pth").write_bytes(checkpoint.read_bytes())
    with pytest.raises(FileNotFoundError, match="config file not found"):
        VideoPredictor.from_checkpoint(tmp_path / "model.pth")


def test_your_videos_shorter_than_a_clip_get_masks_by_default():
    """VideoPredictor stitches the final clip consistently unless asked for the original's quirk (which leaves a
    one-clip video empty: test_runner); the stub segments the grey square exactly (tests/inference/stubs.py)."""
    from .stubs import StubTracker, make_video, square, square_mask

    frames = make_video({40: [(2, 2)] * 3})
    predictor = VideoPredictor.from_model(StubTracker(), Config(), device="cpu")
    results = list(predictor.segment(frames, "vos", masks={0: square((2, 2)).astype(np.uint8)}, disable_resize=True))
    assert [index for index, _ in results] == [0, 1, 2]
    for _, result in results:
        assert result.object_ids == [1]
        np.testing.assert_array_equal(result.masks[0], square_mask((2, 2)))


@pytest.mark.parametrize("reuse", [False, True], ids=["default", "reuse_points_on_overlap"])
def test_your_videos_use_a_point_on_an_overlap_frame_once_by_default(reuse):
    """Object 3's point on frame 3 lies in clips 0-3 and 2-5, where it has survived as a mask object. By default
    the point is not given again; reuse_points_on_overlap=True gives it again, as the original (test_runner).
    The stub answers a point object with the top-left 2x2 cells of its square, a mask object with the square,
    and the point object outbids the mask object: on frames 3-5 object 3 is the block only when reused."""
    from .stubs import StubTracker, centre, make_video, square_mask

    squares = {40: [(1, 1)] * 6, 160: [(6, 10)] * 6}
    predictor = VideoPredictor.from_model(StubTracker(point_block=2), Config(), device="cpu")
    points = {1: (0, centre((1, 1))[::-1]), 3: (3, centre((6, 10))[::-1])}  # (frame, (x, y))
    results = list(predictor.segment(make_video(squares), "pet", points=points, clip_length=4, frame_overlap=2,
                                     disable_resize=True, reuse_points_on_overlap=reuse))
    assert [result.object_ids for _, result in results] == [[1]] * 3 + [[1, 3]] * 3
    for t, result in results[3:]:
        np.testing.assert_array_equal(result.masks[1], square_mask((6, 10), side=2 if reuse else 3),
                                      err_msg=f"frame {t}")
