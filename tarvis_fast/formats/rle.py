"""COCO run-length encoding of binary masks, as YouTube-VIS, OVIS and BURST store them.

A compressed RLE is `{"size": [H, W], "counts": str}` (column-major runs, LEB128-like text); an
uncompressed one has `counts` as a list of run lengths. pycocotools does the encoding.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_api

RLE = dict[str, Any]


def encode_rle(mask: np.ndarray) -> RLE:
    """Binary mask (H, W) -> compressed RLE with `counts` as str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects one (H, W) mask, got shape {mask.shape}")
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def to_compressed(rle: RLE) -> RLE:
    """Any RLE (compressed, or uncompressed with a list of counts) -> compressed with `counts` as bytes,
    the form pycocotools' area/iou/decode take."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"not an RLE dict with 'size' and 'counts': {str(rle)[:80]}")
    h, w = (int(s) for s in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_api.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """RLE (compressed or uncompressed) -> bool mask (H, W)."""
    return mask_api.decode(to_compressed(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    return int(mask_api.area(to_compressed(rle)))
