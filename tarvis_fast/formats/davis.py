"""DAVIS-2017 label PNGs: ground-truth annotation folders and result folders.

A DAVIS label PNG is an indexed (palette) image whose pixel values are object ids: 0 = background,
1..N = objects, 255 = void (ground truth only). The colours are the PASCAL VOC colour map, so that
object 1 is dark red, 2 dark green, and so on.

Layouts (EVAL.md §2):
    <root>/JPEGImages/480p/<seq>/00000.jpg ...          frames (only counted)
    <root>/Annotations/480p/<seq>/00000.png ...         semi-supervised ground truth
    <root>/Annotations_unsupervised/480p/<seq>/...      unsupervised ground truth
    <root>/ImageSets/2017/<subset>.txt                  sequence names, one a line
    <results>/<seq>/<frame>.png                         results: one PNG per ground-truth frame name
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tarvis_fast.formats.atomic import atomic_open

VOID_ID = 255
TASKS = ("semi-supervised", "unsupervised")


def pascal_palette() -> np.ndarray:
    """The PASCAL VOC colour map as a (256, 3) uint8 array.

    Colour bit 7 - j of red, green and blue holds bit 3j, 3j + 1 and 3j + 2 of the id: the lowest
    id bits go to the most significant colour bits, so small ids get well-separated colours.
    """
    ids = np.arange(256)
    palette = np.zeros((256, 3), np.uint8)
    for j in range(8):
        for channel in range(3):
            palette[:, channel] |= (((ids >> (3 * j + channel)) & 1) << (7 - j)).astype(np.uint8)
    return palette


DAVIS_PALETTE = pascal_palette()


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write an (H, W) map of ids 0..255 as a palette PNG, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: labels must be one (H, W) map, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"{path}: label ids must lie in 0..255, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    image = Image.fromarray(labels)  # uint8 (H, W) -> mode "L"; the palette makes it "P"
    image.putpalette(DAVIS_PALETTE.ravel().tolist())
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")


def read_label_png(path: str | Path, *, shape: tuple[int, int] | None = None, max_id: int | None = None) -> np.ndarray:
    """Read an indexed (palette or 8-bit grey) label PNG as an (H, W) uint8 map of ids.

    Raises ValueError naming the file when it is missing, not an 8-bit indexed image, not of size
    `shape` (H, W), or holds an id above `max_id`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label PNG not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(f"{path}: expected an indexed (palette) or 8-bit grey PNG of object ids, "
                                 f"got mode {image.mode}")
            labels = np.array(image)
    except OSError as err:  # PIL's messages ("image file is truncated") do not name the file
        raise ValueError(f"{path}: not a readable PNG ({err})") from None
    if shape is not None and labels.shape != tuple(shape):
        raise ValueError(f"{path}: size (H, W) = {labels.shape}, expected {tuple(shape)}")
    if max_id is not None and labels.size and labels.max() > max_id:
        raise ValueError(f"{path}: holds object id {labels.max()}, but at most {max_id} are allowed here")
    return labels


def read_split(root: str | Path, subset: str = "val") -> list[str]:
    """Sequence names of `subset` from <root>/ImageSets/2017/<subset>.txt."""
    path = Path(root) / "ImageSets" / "2017" / f"{subset}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DAVIS sequence list not found (is {root} a DAVIS-2017 root?)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: lists no sequences")
    return names


def read_annotations(root: str | Path, sequence: str, *, task: str = "semi-supervised",
                     resolution: str = "480p") -> tuple[list[str], np.ndarray]:
    """Ground truth of one sequence: (frame names without extension, labels (T, H, W) uint8).

    The frames are the annotation PNGs in name order. As in the official toolkit, the sequence must
    have frames in JPEGImages, and at least as many annotation PNGs as frames.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    root = Path(root)
    folder = "Annotations" if task == "semi-supervised" else "Annotations_unsupervised"
    mask_dir = root / folder / resolution / sequence
    image_dir = root / "JPEGImages" / resolution / sequence
    n_images = len(list(image_dir.glob("*.jpg")))
    if n_images == 0:
        raise FileNotFoundError(f"{image_dir}: no frames (*.jpg) for sequence {sequence}")
    mask_paths = sorted(mask_dir.glob("*.png"))
    if len(mask_paths) < n_images:
        raise ValueError(f"{mask_dir}: {len(mask_paths)} annotation PNGs for {n_images} frames in {image_dir}")
    first = read_label_png(mask_paths[0])
    labels = np.empty((len(mask_paths), *first.shape), np.uint8)
    labels[0] = first
    for t, path in enumerate(mask_paths[1:], 1):
        labels[t] = read_label_png(path, shape=first.shape)
    return [p.stem for p in mask_paths], labels


def read_results(results_dir: str | Path, sequence: str, frame_names: Sequence[str], *,
                 shape: tuple[int, int], max_id: int) -> np.ndarray:
    """Result labels (T, H, W) uint8 of one sequence, read from <results_dir>/<sequence>/<frame>.png for
    each ground-truth frame name; raises naming the file for a missing frame, a wrong size or an id
    above `max_id`."""
    folder = Path(results_dir) / sequence
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no results for sequence {sequence}")
    labels = np.empty((len(frame_names), *shape), np.uint8)
    for t, name in enumerate(frame_names):
        labels[t] = read_label_png(folder / f"{name}.png", shape=shape, max_id=max_id)
    return labels


def write_results(results_dir: str | Path, sequence: str, frame_names: Sequence[str], labels: np.ndarray) -> None:
    """Write result labels (T, H, W) of one sequence as <results_dir>/<sequence>/<frame>.png."""
    if len(frame_names) != len(labels):
        raise ValueError(f"sequence {sequence}: {len(frame_names)} frame names for {len(labels)} label maps")
    folder = Path(results_dir) / sequence
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame_labels in zip(frame_names, labels):
        write_label_png(folder / f"{name}.png", frame_labels)
