"""KITTI-STEP PNGs: channel layout by hand, round trip, and malformed files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.formats import kitti_step
from tarvis_fast.formats.kitti_step import KittiStepFormatError


def test_channels_by_hand_and_round_trip(tmp_path):
    semantic = np.array([[13, 255], [0, 11]])
    instance = np.array([[300, 0], [0, 999]])
    kitti_step.write_kitti_step_png(tmp_path / "f.png", semantic, instance)
    # R = semantic, G = instance // 256, B = instance % 256: 300 -> (1, 44), 999 -> (3, 231)
    rgb = np.asarray(Image.open(tmp_path / "f.png"))
    assert rgb[0, 0].tolist() == [13, 1, 44] and rgb[1, 1].tolist() == [11, 3, 231]
    read_semantic, read_instance = kitti_step.read_kitti_step_png(tmp_path / "f.png")
    assert np.array_equal(read_semantic, semantic) and np.array_equal(read_instance, instance)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_writer_refuses_ids_it_cannot_store():
    with pytest.raises(ValueError, match=r"instance ids must lie in \[0, 1000\)"):
        kitti_step.write_kitti_step_png("unused.png", np.zeros((1, 1)), np.array([[1000]]))


@pytest.mark.parametrize("rgb, message", [
    ([[[19, 0, 0]]], r"unknown semantic ids \[19\]"),
    ([[[11, 4, 0]]], "instance id 1024 >= 1000"),
])
def test_reader_checks_the_label_space(tmp_path, rgb, message):
    Image.fromarray(np.array(rgb, np.uint8)).save(tmp_path / "000007.png")
    with pytest.raises(KittiStepFormatError, match=f"000007.png: {message}"):
        kitti_step.read_kitti_step_png(tmp_path / "000007.png")


def test_reader_checks_mode_and_size(tmp_path):
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(KittiStepFormatError, match="gray.png: .*3-channel RGB, got mode 'L'"):
        kitti_step.read_kitti_step_png(tmp_path / "gray.png")
    kitti_step.write_kitti_step_png(tmp_path / "f.png", np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(KittiStepFormatError, match="f.png: size 3x2 .* ground truth's 4x2"):
        kitti_step.read_kitti_step_png(tmp_path / "f.png", expected_shape=(2, 4))


def test_sequences_and_prediction_paths(tmp_path):
    for side in ("gt", "pred"):
        for seq, frames in (("0002", 2), ("0006", 1)):
            (tmp_path / side / seq).mkdir(parents=True)
            for t in range(frames):
                kitti_step.write_kitti_step_png(tmp_path / side / seq / f"{t:06d}.png", np.zeros((1, 1)),
                                                np.zeros((1, 1)))
    gt = kitti_step.read_kitti_step_gt(tmp_path / "gt")
    assert {k: [p.name for p in v] for k, v in gt.items()} == {"0002": ["000000.png", "000001.png"],
                                                               "0006": ["000000.png"]}
    assert list(kitti_step.read_kitti_step_gt(tmp_path / "gt", ("0006",))) == ["0006"]
    pred = kitti_step.kitti_step_prediction_paths(tmp_path / "pred", gt)
    assert pred["0002"][1] == tmp_path / "pred" / "0002" / "000001.png"
    (tmp_path / "pred" / "0002" / "000001.png").unlink()
    with pytest.raises(KittiStepFormatError, match="1 predicted frames missing, e.g. .*0002/000001.png"):
        kitti_step.kitti_step_prediction_paths(tmp_path / "pred", gt)
    with pytest.raises(KittiStepFormatError, match="no PNG frames"):
        kitti_step.read_kitti_step_gt(tmp_path, ("gt",))
