"""DAVIS label PNGs: the palette, writer/reader round trips and the named errors of the readers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.formats.davis import (
    DAVIS_PALETTE,
    read_annotations,
    read_label_png,
    read_results,
    read_split,
    write_label_png,
    write_results,
)


def test_palette_is_the_pascal_voc_colour_map(davis_clip):
    # Hand-derived: id 1 -> bit 0 into red bit 7 = (128, 0, 0); id 2 -> (0, 128, 0); id 7 -> (128, 128, 128);
    # id 8 -> bit 3 into red bit 6 = (64, 0, 0); id 255 = 0b11111111 -> (224, 224, 192).
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    for label, colour in {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 7: (128, 128, 128), 8: (64, 0, 0),
                          255: (224, 224, 192)}.items():
        assert tuple(DAVIS_PALETTE[label]) == colour
    # The whole palette equals the one in the official toolkit's OSVOS results.
    with Image.open(davis_clip / "osvos" / "horsejump-high" / "00000.png") as image:
        np.testing.assert_array_equal(np.array(image.getpalette()).reshape(-1, 3), DAVIS_PALETTE)


def test_round_trip_writes_palette_png_atomically(tmp_path):
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    write_label_png(tmp_path / "a.png", labels)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.array(image.getpalette()).reshape(-1, 3), DAVIS_PALETTE)
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png", shape=(6, 8)), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind
    # Any integer dtype within 0..255 is accepted; ids outside are not.
    write_label_png(tmp_path / "b.png", labels.astype(np.int64))
    np.testing.assert_array_equal(read_label_png(tmp_path / "b.png"), labels)
    with pytest.raises(ValueError, match=r"c\.png: label ids must lie in 0\.\.255, got 0\.\.256"):
        write_label_png(tmp_path / "c.png", np.array([[0, 256]]))
    with pytest.raises(ValueError, match=r"c\.png: labels must be one \(H, W\) map"):
        write_label_png(tmp_path / "c.png", np.zeros((2, 3, 4), np.uint8))
    assert not (tmp_path / "c.png").exists()


def test_reader_rejects_bad_files_by_name(tmp_path):
    write_label_png(tmp_path / "a.png", np.array([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match=r"a\.png: size \(H, W\) = \(2, 2\), expected \(2, 3\)"):
        read_label_png(tmp_path / "a.png", shape=(2, 3))
    with pytest.raises(ValueError, match=r"a\.png: holds object id 3, but at most 2 are allowed"):
        read_label_png(tmp_path / "a.png", max_id=2)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: expected an indexed .*got mode RGB"):
        read_label_png(tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError, match=r"gone\.png: label PNG not found"):
        read_label_png(tmp_path / "gone.png")


def test_sequence_folders(tmp_path):
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[:, 1, 1] = [1, 2, 255]
    names = ["00000", "00005", "00010"]
    write_results(tmp_path / "Annotations" / "480p", "seq", names, labels)
    (tmp_path / "JPEGImages" / "480p" / "seq").mkdir(parents=True)
    for name in names:
        (tmp_path / "JPEGImages" / "480p" / "seq" / f"{name}.jpg").touch()
    frame_names, read_back = read_annotations(tmp_path, "seq")
    assert frame_names == names
    np.testing.assert_array_equal(read_back, labels)
    np.testing.assert_array_equal(read_results(tmp_path / "Annotations" / "480p", "seq", names[1:], shape=(4, 5),
                                               max_id=255), labels[1:])
    with pytest.raises(ValueError, match="2 frame names for 3 label maps"):
        write_results(tmp_path / "res", "seq", names[:2], labels)
    with pytest.raises(ValueError, match="task must be one of"):
        read_annotations(tmp_path, "seq", task="interactive")
    with pytest.raises(FileNotFoundError, match=r"no frames \(\*\.jpg\) for sequence other"):
        read_annotations(tmp_path, "other")
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("seq\n\nother\n")
    assert read_split(tmp_path) == ["seq", "other"]
    (tmp_path / "ImageSets" / "2017" / "train.txt").write_text("\n")
    with pytest.raises(ValueError, match="train.txt: lists no sequences"):
        read_split(tmp_path, "train")
