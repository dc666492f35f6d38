"""Image files: whole reads, header reads, and the errors that name the file (the caller's error type)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tarvis_fast.data.videos import DataError, read_frame
from tarvis_fast.formats.image import image_size, read_image


def _jpeg(path, height=24, width=32):
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def test_reads_whole_and_header(tmp_path):
    path = _jpeg(tmp_path / "a.jpg")
    assert read_image(path).shape == (24, 32, 3) and image_size(path) == (24, 32)


def test_a_truncated_jpeg_is_an_error_for_inference_and_training_alike(tmp_path):
    path = _jpeg(tmp_path / "cut.jpg")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cv2.imread(str(path)) is not None  # OpenCV alone would hand back a half-grey frame
    with pytest.raises(ValueError, match=r"cut\.jpg: truncated or corrupt JPEG"):
        read_image(path)
    with pytest.raises(DataError, match=r"cut\.jpg: truncated or corrupt JPEG"):
        read_frame(path)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jpg: image not found"):
        read_image(tmp_path / "nope.jpg", DataError)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.png: cannot read the image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match=r"text\.png: not a readable image"):
        image_size(tmp_path / "text.png")
