"""Where each training dataset lies, how it is laid out, and how its clips are cut: the builder from the config.

    source = build_source("DAVIS", cfg)      # a ClipSource reading $TARVIS_WORKSPACE_DIR/... (or the config's paths)

Known datasets default to the original's tree under $TARVIS_WORKSPACE_DIR (its `utils/paths.py`); any of them, and
any dataset the config adds (the user's own), is read from `datasets.<NAME>.training.{layout, images, annotations,
masks}` when set. Relative paths are under $TARVIS_WORKSPACE_DIR, or the current directory when it is unset.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tarvis_fast.config import Config, DatasetConfig
from tarvis_fast.data.augment import PANOPTIC_JITTER, VIDEO_JITTER
from tarvis_fast.data.clips import ClipSettings, ClipSource, Resize, VideoClipSource
from tarvis_fast.data.images import (
    DEFAULT_RULES,
    IMAGE_DATASET_RULES,
    ImageClipSource,
    PseudoVideoSettings,
)
from tarvis_fast.data.videos import DataError, read_videos
from tarvis_fast.datasets import WORKSPACE_ENV
from tarvis_fast.formats.coco_panoptic import CocoPanopticError, read_coco_panoptic
from tarvis_fast.tasks import Task

_IMAGES, _ANNOTATIONS = "dataset_images/training", "dataset_annotations/training"


@dataclass(frozen=True)
class SourceDefaults:
    layout: str
    images: str
    annotations: str
    masks: str | None = None
    crop_factor: tuple[float, float] = (0.75, 0.75)
    consecutive: bool = False


def _image_dataset(name: str) -> SourceDefaults:
    folder = f"{_ANNOTATIONS}/{name.lower()}_panoptic"
    return SourceDefaults("coco_panoptic", f"{_IMAGES}/{name.lower()}", f"{folder}/segments.json", f"{folder}/pan_maps")


DEFAULTS: dict[str, SourceDefaults] = {
    "YOUTUBE_VIS": SourceDefaults("ytvis", f"{_IMAGES}/youtube_vis_2021", f"{_ANNOTATIONS}/youtube_vis_2021.json"),
    "OVIS": SourceDefaults("ytvis", f"{_IMAGES}/ovis", f"{_ANNOTATIONS}/ovis.json"),
    "KITTI_STEP": SourceDefaults("video_json", f"{_IMAGES}/kitti_step", f"{_ANNOTATIONS}/kitti_step.json",
                                 crop_factor=(0.75, 0.5)),
    "CITYSCAPES_VPS": SourceDefaults("video_json", f"{_IMAGES}/cityscapes_vps", f"{_ANNOTATIONS}/cityscapes_vps.json",
                                     crop_factor=(0.5, 0.5), consecutive=True),
    "VIPSEG": SourceDefaults("vipseg", f"{_IMAGES}/vipseg", f"{_ANNOTATIONS}/vipseg/video_info.json",
                             f"{_ANNOTATIONS}/vipseg/panoptic_masks", crop_factor=(0.75, 0.5)),
    "DAVIS": SourceDefaults("video_json", f"{_IMAGES}/davis", f"{_ANNOTATIONS}/davis_semisupervised.json"),
    "BURST": SourceDefaults("burst", f"{_IMAGES}/burst", f"{_ANNOTATIONS}/burst.json"),
    **{name: _image_dataset(name) for name in ("COCO", "ADE20K", "CITYSCAPES", "MAPILLARY")},
}


def workspace_path(path: str) -> Path:
    """An absolute path as is; a relative one under $TARVIS_WORKSPACE_DIR (the current directory when unset)."""
    if os.path.isabs(path):
        return Path(path)
    return Path(os.environ.get(WORKSPACE_ENV, ".")) / path


def _resize(name: str, dataset: DatasetConfig) -> Resize:
    resize = dataset.training.image_resize
    if resize.mode == "min_dim":
        return Resize(tuple(resize.min_dims), resize.max_dim)
    if resize.mode == "none":
        return Resize(None)
    raise DataError(f"datasets.{name}.training.image_resize.mode {resize.mode!r} is not used in training; "
                    "choose min_dim or none")


def _path(value: str | None, default: str | None) -> Path | None:
    chosen = value if value is not None else default
    return None if chosen is None else workspace_path(chosen)


def _image_source(name: str, cfg: Config, images: Path, annotations: Path, masks: Path | None) -> ClipSource:
    """An image panoptic dataset as pseudo-videos (`data.images`): the crop is `training.pretrain_image_size`,
    the per-frame shorter side its height + 0/32/64 as the original; the dataset's own `image_resize` is unused."""
    dataset = cfg.datasets[name]
    if dataset.type is Task.VOS:
        raise DataError(f"datasets.{name}: a coco_panoptic dataset has classes; its type is panoptic_seg or "
                        "instance_seg (pre-training draws its task by training.pretrain_task_weights)")
    if masks is None:
        raise DataError(f"datasets.{name}.training.masks: the coco_panoptic layout needs the folder of panoptic PNGs")
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    if not masks.is_dir():
        raise DataError(f"{masks}: panoptic PNG folder not found")
    try:
        data = read_coco_panoptic(annotations)
    except (FileNotFoundError, CocoPanopticError) as err:
        raise DataError(str(err)) from None
    queries = max(1, cfg.model.num_vos_queries_per_object)
    settings = PseudoVideoSettings(clip_length=cfg.training.clip_length,
                                   output_size=tuple(cfg.training.pretrain_image_size),
                                   max_objects=max(1, 32 // queries))
    return ImageClipSource(name, dataset.type, data, images, masks, IMAGE_DATASET_RULES.get(name, DEFAULT_RULES),
                           settings, dataset.num_classes)


def build_source(name: str, cfg: Config) -> ClipSource:
    """The ClipSource of dataset `name` as `cfg` describes it; DataError naming the file or the config key when its
    data cannot be read or disagrees with the config (e.g. more classes than `num_classes`)."""
    dataset = cfg.datasets[name]
    training = dataset.training
    defaults = DEFAULTS.get(name)
    layout = training.layout or (defaults.layout if defaults else None)
    if layout is None or (defaults is None and (training.images is None or training.annotations is None)):
        raise DataError(f"datasets.{name}.training: a dataset of your own needs layout, images and annotations")
    images = _path(training.images, defaults.images if defaults else None)
    annotations = _path(training.annotations, defaults.annotations if defaults else None)
    masks = _path(training.masks, defaults.masks if defaults else None)
    if layout == "coco_panoptic":   # pseudo-videos: their own sizes (training.pretrain_image_size) and crops
        return _image_source(name, cfg, images, annotations, masks)
    crop_factor = training.crop_factor or (defaults.crop_factor if defaults else (0.75, 0.75))
    clip_length = cfg.training.clip_length
    settings = ClipSettings(
        clip_length=clip_length,
        frame_range=int(round(training.frame_sampling_multiplicative_factor * clip_length)),
        resize=_resize(name, dataset), crop_factor=crop_factor,
        colour=PANOPTIC_JITTER if dataset.type is Task.VPS else VIDEO_JITTER,
        consecutive=defaults.consecutive if defaults else False)
    video_set = read_videos(layout, dataset.type, images, annotations, masks)
    if dataset.type is not Task.VOS:
        classes = {c for video in video_set.videos for c in video.classes.values()}
        if classes and (min(classes) < 1 or max(classes) > dataset.num_classes):
            raise DataError(f"{annotations}: instance classes span {min(classes)}..{max(classes)}, but "
                            f"datasets.{name}.num_classes is {dataset.num_classes} (classes are 1..num_classes)")
    return VideoClipSource(name, dataset.type, video_set, settings)
