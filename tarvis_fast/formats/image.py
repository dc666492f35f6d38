"""Image files (video frames): read whole or only their header, with errors that name the file.

    bgr = read_image(path)                  # (H, W, 3) uint8 BGR, as OpenCV reads it
    height, width = image_size(path)        # from the header alone

`error` is the exception type a caller's layer raises (as `jsonfile.read_json` takes it), e.g. the data pipeline's
`DataError`; it must accept one message.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
JPEG_SUFFIXES = (".jpg", ".jpeg")
JPEG_END_MARKER = b"\xff\xd9"


def read_image(path: str | os.PathLike, error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W, 3) uint8 BGR; `error` naming the file when it cannot be read or is a truncated JPEG."""
    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise error(f"{path}: {'cannot read the image' if path.is_file() else 'image not found'}")
    if path.suffix.lower() in JPEG_SUFFIXES:
        _check_jpeg_complete(path, error)
    return bgr


def _check_jpeg_complete(path: Path, error: type[Exception]) -> None:
    """cv2 decodes a truncated JPEG as far as it goes, greys the rest and only lets libjpeg print a warning, so a
    cut-off frame would be used as if it were whole. A complete JPEG ends with the end-of-image marker (FF D9); a
    file that does not (some writers append data after it) is decoded again by PIL, which raises on truncation."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64))
        tail = handle.read().rstrip(b"\x00")  # some writers pad with zeros
    if tail.endswith(JPEG_END_MARKER):
        return
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError) as err:  # PIL raises SyntaxError for some broken headers
        raise error(f"{path}: truncated or corrupt JPEG ({err})") from None


def image_size(path: str | os.PathLike, error: type[Exception] = ValueError) -> tuple[int, int]:
    """(H, W) of an image from its header alone; `error` naming the file when it is missing or not an image."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError) as err:
        raise error(f"{path}: not a readable image ({err})") from None
