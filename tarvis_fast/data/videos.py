"""Annotated training videos, one interface over every on-disk layout.

A `Video` knows its frames' image files, which instances each frame holds, and the class of each instance; it loads
the pixels of the frames a clip needs and nothing else. `read_videos` builds the videos of a dataset from its layout:

    video_json      the original's generic json (DAVIS, KITTI-STEP, Cityscapes-VPS)      formats.video_json
    ytvis           YouTube-VIS / OVIS json                                               formats.ytvis
    burst           BURST json (annotated frames only; masks under 100 pixels dropped)    formats.burst
    davis_folder    <images>/<seq>/<frame>.jpg + <annotations>/<seq>/<frame>.png palette  formats.davis
    vipseg          video_info.json + single-channel panoptic PNGs                        formats.vipseg_train
    panoptic_video  VIPSeg-style panoptic json + RGB PNGs (COCO-panoptic per video)       formats.panoptic

Classes: a VIS/VPS instance's class is 1..C, a semantic label 0..C-1 (the network's query order). Each layout's rule
is in its builder; `VideoSet.category_ids` maps classes back to the dataset's own category ids for previews.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tarvis_fast.data.augment import IGNORE
from tarvis_fast.formats import burst, davis, panoptic, vipseg_train, ytvis
from tarvis_fast.formats.image import IMAGE_SUFFIXES, image_size, read_image
from tarvis_fast.formats.rle import RLE, decode_rle, rle_area
from tarvis_fast.formats.video_json import VideoSequence, read_video_json
from tarvis_fast.tasks import Task

BURST_MIN_MASK_AREA = 100  # the original's BURST mapper drops smaller masks


class DataError(ValueError):
    """Training data is unusable; the message names the file and the problem."""


def read_frame(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR, as cv2 reads it; DataError naming the file when missing, truncated or not of `size`."""
    image = read_image(path, DataError)
    if size is not None and image.shape[:2] != tuple(size):
        raise DataError(f"{path}: image is {image.shape[0]}x{image.shape[1]} (HxW) but its annotation is "
                        f"{size[0]}x{size[1]}")
    return image


@dataclass
class Video(ABC):
    """name: source id; size: (H, W); images: one file per frame; instances: per frame, the ids with a mask there;
    classes: instance id -> class 1..C (empty for the class-agnostic VOS data)."""

    name: str
    size: tuple[int, int]
    images: tuple[Path, ...]
    instances: tuple[frozenset[int], ...]
    classes: Mapping[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def instance_ids(self) -> list[int]:
        return sorted(set().union(*self.instances))

    def load_images(self, frames: Sequence[int]) -> np.ndarray:
        """(T, H, W, 3) uint8 BGR."""
        return np.stack([read_frame(self.images[t], self.size) for t in frames])

    @abstractmethod
    def load_masks(self, frames: Sequence[int], ids: Sequence[int]) -> np.ndarray:
        """(N, T, H, W) bool masks of instances `ids` (empty where an instance is absent)."""

    def load_labels(self, frames: Sequence[int]) -> np.ndarray:
        """(T, H, W) int64 semantic labels 0..C-1, IGNORE for void (VPS data only)."""
        raise DataError(f"video {self.name}: its annotations have no semantic labels (a VPS dataset needs them)")


@dataclass
class RleVideo(Video):
    """Masks as RLEs (the json layouts). semantic: per frame, label -> RLE; labels equal to `void_label` are void."""

    masks: tuple[Mapping[int, RLE], ...] = ()
    semantic: tuple[Mapping[int, RLE], ...] | None = None
    void_label: int | None = None

    def load_masks(self, frames: Sequence[int], ids: Sequence[int]) -> np.ndarray:
        out = np.zeros((len(ids), len(frames), *self.size), bool)
        for j, t in enumerate(frames):
            for i, iid in enumerate(ids):
                if iid in self.masks[t]:
                    out[i, j] = self._decode(self.masks[t][iid], f"frame {t}, instance {iid}")
        return out

    def load_labels(self, frames: Sequence[int]) -> np.ndarray:
        if self.semantic is None:
            return super().load_labels(frames)
        labels = np.zeros((len(frames), *self.size), np.int64)  # the original's condensed maps default to class 0
        for j, t in enumerate(frames):
            # ascending labels, void last: a later one overwrites, as the original's condensing loop
            for label in sorted(self.semantic[t], key=lambda v: (v == self.void_label, v)):
                mask = self._decode(self.semantic[t][label], f"frame {t}, semantic label {label}")
                labels[j][mask] = IGNORE if label == self.void_label else label
        return labels

    def _decode(self, rle: RLE, what: str) -> np.ndarray:
        mask = decode_rle(rle)
        if mask.shape != tuple(self.size):
            raise DataError(f"video {self.name}, {what}: RLE size {mask.shape} differs from the video's {self.size}")
        return mask


@dataclass
class LabelPngVideo(Video):
    """DAVIS palette PNGs: pixel value = object id, 0 background, 255 void."""

    label_pngs: tuple[Path, ...] = ()

    def load_masks(self, frames: Sequence[int], ids: Sequence[int]) -> np.ndarray:
        labels = np.stack([davis.read_label_png(self.label_pngs[t], shape=self.size) for t in frames])
        return labels[None] == np.asarray(ids, np.uint8).reshape(-1, 1, 1, 1)


@dataclass
class PanopticPngVideo(Video):
    """Panoptic PNGs whose pixel values map to segments: `thing_ids` are instances (their class in `classes`),
    `stuff` maps a pixel value to its label 0..C-1; any other value is void. rgb: the PNGs are RGB-encoded ids."""

    pngs: tuple[Path, ...] = ()
    stuff: Mapping[int, int] = field(default_factory=dict)
    rgb: bool = False

    def _frame_values(self, frames: Sequence[int]) -> np.ndarray:
        """(T, H, W) pixel values as read (uint8/uint16 PNG values, or uint32 RGB ids); a clip asks for its masks
        and its labels, so the last clip's are kept."""
        key = tuple(frames)
        if getattr(self, "_last", (None,))[0] != key:
            self._last = (key, np.stack([self._values(t) for t in frames]))
        return self._last[1]

    def _values(self, t: int) -> np.ndarray:
        if self.rgb:
            try:
                ids = panoptic.read_panoptic_png(self.pngs[t])
            except panoptic.PanopticFormatError as err:
                raise DataError(str(err)) from None
            if ids.shape != tuple(self.size):
                raise DataError(f"{self.pngs[t]}: size {ids.shape} differs from its frame's {self.size}")
            return ids
        return vipseg_train.read_panoptic_values(self.pngs[t], self.size, native=True)

    def load_masks(self, frames: Sequence[int], ids: Sequence[int]) -> np.ndarray:
        values = self._frame_values(frames)
        wanted = np.asarray(ids, np.int64)
        if len(wanted) and 0 <= wanted.min() and wanted.max() <= np.iinfo(values.dtype).max:
            wanted = wanted.astype(values.dtype)   # compare in the maps' own type, not a widened copy
        return values[None] == wanted.reshape(-1, 1, 1, 1)

    def load_labels(self, frames: Sequence[int]) -> np.ndarray:
        """(T, H, W) int32 labels (a compact int type; `resize_labels` makes them int64)."""
        values = self._frame_values(frames)
        if getattr(self, "_label_table", None) is None:   # sorted pixel values and their labels, built once
            table = {**self.stuff, **{iid: cls - 1 for iid, cls in self.classes.items()}}
            keys = np.asarray(sorted(table), np.int64)
            self._label_table = (keys, np.asarray([table[k] for k in keys.tolist()], np.int32))
        keys, labels = self._label_table
        if values.dtype.itemsize <= 2:   # 8/16-bit PNG values: one table lookup per pixel
            luts = self.__dict__.setdefault("_label_luts", {})
            if values.dtype.itemsize not in luts:
                lut = np.full(1 << (8 * values.dtype.itemsize), IGNORE, np.int32)
                small = keys < len(lut)
                lut[keys[small]] = labels[small]
                luts[values.dtype.itemsize] = lut
            return luts[values.dtype.itemsize][values]
        if not len(keys):
            return np.full(values.shape, IGNORE, np.int32)
        position = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        return np.where(keys[position] == values, labels[position], IGNORE).astype(np.int32)


@dataclass(frozen=True)
class VideoSet:
    """A dataset's videos. category_ids: class (1..C; 0-based semantic label + 1) -> the dataset's category id."""

    videos: tuple[Video, ...]
    category_ids: Mapping[int, int]
    category_names: Mapping[int, str]


# ============================================================================================== layouts

def _rle_videos(sequences: Sequence[VideoSequence], images: Path, class_of: Mapping[int, int],
                void_label: int | None = None) -> tuple[Video, ...]:
    """RleVideos from generic sequences; class_of maps a category id to its class 1..C (identity when empty)."""
    return tuple(RleVideo(
        name=seq.id, size=(seq.height, seq.width), images=tuple(images / p for p in seq.image_paths),
        instances=tuple(frozenset(frame) for frame in seq.segmentations),
        classes={iid: class_of.get(cat, cat) for iid, cat in seq.categories.items()},
        masks=seq.segmentations, semantic=seq.semantic_segmentations, void_label=void_label,
    ) for seq in sequences)


def _video_json(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """The generic json. VPS (KITTI-STEP, Cityscapes-VPS): categories and semantic labels are 0-based with 255 void,
    an instance's class is its category + 1. VIS, VOS: category ids are the classes."""
    content = read_video_json(annotations)
    shift = 1 if task is Task.VPS else 0
    categories = sorted({c for seq in content.sequences for c in seq.categories.values()} | set(content.category_labels))
    class_of = {c: c + shift for c in categories}
    videos = _rle_videos(content.sequences, images, class_of, void_label=255 if task is Task.VPS else None)
    return VideoSet(videos, {cls: cat for cat, cls in class_of.items()}, content.category_labels)


def _ytvis(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """YouTube-VIS / OVIS json: class = position of the category id among the sorted ids, + 1 (the identity for the
    official files, whose ids are 1..C)."""
    names, sequences = ytvis.read_video_sequences(annotations)
    class_of = {cat: i + 1 for i, cat in enumerate(sorted(names))}
    return VideoSet(_rle_videos(sequences, images, class_of), {v: k for k, v in class_of.items()}, names)


def _burst(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """BURST json, as the original's mapper: the annotated frames only; masks under 100 pixels dropped."""
    try:
        _, sequences = burst.read_burst_annotations(annotations)
    except burst.BurstFormatError as err:
        raise DataError(str(err)) from None
    generic = []
    for seq in sequences:
        size = [seq.height, seq.width]
        frames = tuple({tid: rle for tid, entry in frame.items()
                        if rle_area(rle := {"size": size, "counts": entry["rle"]}) >= BURST_MIN_MASK_AREA}
                       for frame in seq.segmentations)
        paths = tuple(f"{seq.dataset}/{seq.seq_name}/{name}" for name in seq.annotated_image_paths)
        generic.append(VideoSequence(seq.name, seq.height, seq.width, paths, dict(seq.track_category_ids), frames))
    return VideoSet(_rle_videos(generic, images, {}), {}, {})


def _davis_folder(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """DAVIS folders: every sub-folder of `annotations` is a sequence whose frames are its PNGs (name order), each
    with the image of the same name in `images/<seq>/`. Reads every PNG once to learn which objects each frame holds."""
    if not annotations.is_dir():
        raise DataError(f"{annotations}: DAVIS annotation folder not found")
    videos = []
    for folder in sorted(p for p in annotations.iterdir() if p.is_dir()):
        pngs = tuple(sorted(folder.glob("*.png")))
        if not pngs:
            continue
        frames = tuple(_image_beside(images / folder.name, png.stem) for png in pngs)
        labels = [davis.read_label_png(pngs[0])]
        labels += [davis.read_label_png(png, shape=labels[0].shape) for png in pngs[1:]]
        present = tuple(frozenset(int(v) for v in np.unique(frame) if v not in (0, davis.VOID_ID)) for frame in labels)
        videos.append(LabelPngVideo(folder.name, labels[0].shape, frames, present, label_pngs=pngs))
    return VideoSet(tuple(videos), {}, {})


def _image_beside(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DataError(f"{folder / stem}.jpg: missing image for annotation {stem}.png")


def _vipseg(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """VIPSeg training layout: things of class v // 100 (1-based), stuff pixel v of label v - 1."""
    if masks is None:
        raise DataError(f"{annotations}: the vipseg layout needs `masks`, the folder of panoptic PNGs")
    try:
        names, entries = vipseg_train.read_video_info(annotations)
    except vipseg_train.VipsegTrainError as err:
        raise DataError(str(err)) from None
    videos = []
    for entry in entries:
        first = _image_beside(images / entry.name, entry.filenames[0])
        size = image_size(first, DataError)
        videos.append(PanopticPngVideo(
            entry.name, size, tuple(images / entry.name / f"{f}{first.suffix}" for f in entry.filenames),
            entry.frame_instances, {v: vipseg_train.thing_class(v) + 1 for v in entry.instance_ids},
            pngs=tuple(masks / entry.name / f"{f}.png" for f in entry.filenames),
            stuff={c + 1: c for c in entry.stuff_classes}))
    return VideoSet(tuple(videos), {c + 1: c for c in names}, names)


def _panoptic_video(task: Task, images: Path, annotations: Path, masks: Path | None) -> VideoSet:
    """VIPSeg-style panoptic video json + RGB PNGs (`formats.panoptic`): label = position in `categories`; a thing
    segment id is one instance across the video's frames; images are `<images>/<video>/<frame stem>.jpg`."""
    try:
        dataset = panoptic.read_vipseg_gt(annotations.parent, annotations, masks)
    except panoptic.PanopticFormatError as err:
        raise DataError(str(err)) from None
    label_of = {cat: i for i, cat in enumerate(dataset.categories)}
    videos = []
    for video in dataset.videos:
        frames = tuple(_image_beside(images / video.name, Path(f.name).stem) for f in video.frames)
        size = image_size(frames[0], DataError)
        things = {s.id: label_of[s.category_id] + 1 for f in video.frames for s in f.segments
                  if dataset.categories[s.category_id].isthing}
        stuff = {s.id: label_of[s.category_id] for f in video.frames for s in f.segments
                 if not dataset.categories[s.category_id].isthing}
        present = tuple(frozenset(s.id for s in f.segments if s.id in things) for f in video.frames)
        videos.append(PanopticPngVideo(video.name, size, frames, present, things,
                                       pngs=tuple(f.png for f in video.frames), stuff=stuff, rgb=True))
    return VideoSet(tuple(videos), {i + 1: cat for cat, i in label_of.items()},
                    {c.id: c.name for c in dataset.categories.values()})


_READERS = {"video_json": _video_json, "ytvis": _ytvis, "burst": _burst, "davis_folder": _davis_folder,
            "vipseg": _vipseg, "panoptic_video": _panoptic_video}
VIDEO_LAYOUTS = tuple(_READERS)


def read_videos(layout: str, task: Task, images: Path, annotations: Path, masks: Path | None = None) -> VideoSet:
    """The videos of a dataset in `layout` (see the module docstring). Errors name the file: a missing or malformed
    annotation file, an unknown category id, an annotation file without any annotated instance."""
    if layout not in _READERS:
        raise DataError(f"unknown video layout {layout!r}; known: {', '.join(VIDEO_LAYOUTS)}")
    if not Path(images).is_dir():
        raise DataError(f"{images}: image folder not found")
    try:
        video_set = _READERS[layout](task, Path(images), Path(annotations), None if masks is None else Path(masks))
    except (FileNotFoundError, ValueError) as err:
        raise err if isinstance(err, DataError) else DataError(str(err)) from None
    if not any(video.instance_ids for video in video_set.videos):
        raise DataError(f"{annotations}: no annotated instance in any video (empty annotation file?)")
    return video_set
