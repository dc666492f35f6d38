"""Typed configuration: YAML files loaded into validated dataclasses.

- `load_config(path, overrides)` reads one of our YAML files (which may name a parent with `_base_:`),
  or the original TarViS `config.yaml` that ships beside each released checkpoint (upper-case keys,
  SPEC §4), mapped onto ours.
- Unknown keys and wrong types fail with a `ConfigError` naming the key and the file.
- Command-line overrides: `--cfg.model.backbone SwinLarge`, `--cfg.training.dataset_list "[DAVIS, BURST]"`
  (values are parsed as YAML).
- `save_config(cfg, path)` writes the whole config (atomically); `load_config` reads it back unchanged.

Our key names are the original's, lower-cased, so that its files map one to one; dataset names stay
upper-case (`YOUTUBE_VIS`, `DAVIS`, ...). The defaults below are the original's `base.yaml` values, except
where a comment says otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tarvis_fast.cli_errors import add_debug_flag, run_cli
from tarvis_fast.datasets import DATASETS
from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.tasks import Task

DATASET_TASKS = (Task.VIS, Task.VPS, Task.VOS)  # a dataset's `type`; PET is VOS data with point references


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


# ----------------------------------------------------------------------------------------------------------
# The schema


@dataclass
class ImageResizeConfig:
    """How frames are resized (SPEC §4): `min_dim` sets the shorter side to one of `min_dims` (random choice
    in training) capped so the longer side stays <= `max_dim`; `pixel_area` scales to `target_pixel_area`;
    `none` keeps the native size."""

    mode: Literal["min_dim", "pixel_area", "crop", "none"] = "min_dim"
    min_dims: list[int] = field(default_factory=lambda: [512])
    max_dim: int = 1333
    target_pixel_area: int | None = None


@dataclass
class DatasetTrainingConfig:
    frame_sampling_multiplicative_factor: float = 1.0
    image_resize: ImageResizeConfig = field(default_factory=ImageResizeConfig)
    split: str = "train"
    # Not in the original, whose paths and layouts are fixed: where the training data lies and how it is laid out,
    # so that any dataset in a known layout (the user's own too) trains by naming them. None takes the dataset's
    # default (`tarvis_fast.data.sources`); relative paths are under $TARVIS_WORKSPACE_DIR (the current directory
    # when it is unset). `masks`: VIPSeg's panoptic PNG folder, or the PNG folder of a panoptic layout.
    layout: Literal["video_json", "ytvis", "davis_folder", "burst", "vipseg", "panoptic_video",
                    "coco_panoptic"] | None = None
    images: str | None = None
    annotations: str | None = None
    masks: str | None = None
    crop_factor: tuple[float, float] | None = None  # (h, w) of the random crop; None: the dataset's default


@dataclass
class DatasetInferenceConfig:
    clip_length: int = 12
    frame_overlap: int = 6
    image_resize: ImageResizeConfig = field(default_factory=lambda: ImageResizeConfig(mode="none"))
    max_tracks_per_clip: int = 10
    max_tracks_per_video: int = 10  # VIS output: top (track, class) pairs per video (the original hard-codes 10 / 20)
    track_score_threshold: float = 0.0
    split: str = "val"
    mode: Literal["point", "mask"] = "point"  # BURST: PET (points) or mask-guided
    sparse_frames: bool = False  # Cityscapes-VPS: only every 5th frame is annotated and run

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.frame_overlap <= self.clip_length:  # a frame lies in at most two clips (clip_schedule)
            raise ConfigError(f"inference.frame_overlap ({self.frame_overlap}) must be >= 0 and at most half of "
                              f"clip_length ({self.clip_length})")


@dataclass
class DatasetConfig:
    type: Task            # instance_seg, panoptic_seg or vos, as the original's files spell them
    num_classes: int = 0  # semantic classes; 0 for the class-agnostic VOS/PET datasets
    training: DatasetTrainingConfig = field(default_factory=DatasetTrainingConfig)
    inference: DatasetInferenceConfig = field(default_factory=DatasetInferenceConfig)

    def __post_init__(self) -> None:
        if self.type not in DATASET_TASKS:
            raise ConfigError(f"a dataset's type is one of {[t.value for t in DATASET_TASKS]}, got {self.type.value!r}")
        if self.type is not Task.VOS and self.num_classes <= 0:
            raise ConfigError(f"a {self.type} dataset needs num_classes > 0, got {self.num_classes}")


@dataclass
class ModelConfig:
    """Network hyper-parameters. The original hard-codes everything below `num_vos_queries_per_object`;
    they are here so that tests and experiments can build smaller models."""

    backbone: Literal["ResNet18", "ResNet34", "ResNet50", "ResNet101", "SwinTiny", "SwinSmall", "SwinBase",
                      "SwinLarge"] = "ResNet50"
    cross_attention_type: Literal["hard_masked"] = "hard_masked"
    num_object_queries: int = 100
    num_background_queries: int = 1
    num_vos_queries_per_object: int = 1  # training; inference uses twice as many (SPEC §2.4)
    hidden_dim: int = 256
    num_heads: int = 8
    decoder_layers: int = 9
    decoder_ffn_dim: int = 2048
    neck_layers: int = 6
    neck_ffn_dim: int = 1024
    object_encoder_layers: int = 4
    bg_grid_size: tuple[int, int] = (4, 4)
    drop_path_rate: float = 0.3
    # Not in the original (FrozenBN: its ImageNet-initialised ResNets). GN, a trainable GroupNorm after every conv,
    # is for a ResNet trained from scratch, which frozen batch norm would leave without any normalisation.
    backbone_norm: Literal["FrozenBN", "GN"] = "FrozenBN"
    kernel_backend: Literal["auto", "triton", "torch"] = "auto"

    def __post_init__(self) -> None:
        if self.backbone_norm != "FrozenBN" and not self.backbone.startswith("ResNet"):
            raise ConfigError(f"model.backbone_norm {self.backbone_norm} is for ResNets; {self.backbone} has its own "
                              "LayerNorms")


@dataclass
class LossConfig:
    instance_semantic_weight_cross_entropy: float = 2.0
    panoptic_instance_num_points: int = 12544
    panoptic_semantic: Literal["sparse"] = "sparse"
    panoptic_semantic_num_points: int = 25088
    panoptic_semantic_weight_cross_entropy: float = 2.0
    panoptic_semantic_weight_dice: float = 0.0
    semantic_ignore_null_classes: bool = False
    semantic_regularization_loss: bool = False
    # Not in the original. Its VIS semantic loss reads class ids at a point by bilinear interpolation and
    # truncates (a boundary between classes 2 and 7 reads e.g. 4); true reads them with nearest (the fix).
    semantic_labels_nearest: bool = False


@dataclass
class PretrainTaskWeights:
    instance_seg: float = 0.3
    panoptic_seg: float = 0.3
    vos: float = 0.4


@dataclass
class TrainingConfig:
    batch_size: int = 8  # global, across GPUs and gradient-accumulation steps
    clip_length: int = 3
    base_lr: float = 1e-4
    backbone_lr_factor: float = 0.1  # the per-frame backbone's LR is base_lr times this (SPEC §5.4)
    num_iterations: int = 0
    lr_decay_steps: list[int] = field(default_factory=list)
    lr_decay_rates: list[float] = field(default_factory=list)
    lr_warmup_iterations: int = 0
    checkpoint_save_interval: int = 20000
    max_ckpts_to_keep: int = 2  # the original's --max_ckpts_to_keep: older checkpoints are deleted
    # Not in the original: recompute the activations of backbone blocks, neck and decoder layers in the backward
    # pass instead of keeping them (less memory, more time).
    checkpointing: bool = False
    # Not in the original's config (it names one file per backbone under $TARVIS_WORKSPACE_DIR/pretrained_backbones):
    # an ImageNet checkpoint of the backbone to start from; None looks in that folder.
    pretrained_backbone: str | None = None
    sample_chunking_factor: int = 8
    num_sampled_points_for_mask_loss: int = 12544
    point_vos_task_sample_likelihood: float = 0.3  # per VOS object: given by its point (PET) instead of its mask
    pretraining: bool = False
    pretrain_image_size: tuple[int, int] = (512, 512)
    pretrain_task_weights: PretrainTaskWeights = field(default_factory=PretrainTaskWeights)
    dataset_list: list[str] = field(default_factory=lambda: ["COCO"])
    dataset_weights: list[float] = field(default_factory=lambda: [1.0])
    losses: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if len(self.dataset_list) != len(self.dataset_weights):
            raise ConfigError(
                f"training.dataset_list ({len(self.dataset_list)} names) and training.dataset_weights "
                f"({len(self.dataset_weights)} weights) must have the same length"
            )
        if len(self.lr_decay_steps) != len(self.lr_decay_rates):
            raise ConfigError("training.lr_decay_steps and training.lr_decay_rates must have the same length")


def _default_datasets() -> dict[str, DatasetConfig]:
    """The datasets of the original base.yaml, with its per-dataset defaults; each one's task and classes are its
    row of `tarvis_fast.datasets.DATASETS`."""

    def resize(mode: str, min_dims: list[int], max_dim: int = 1333, area: int | None = None) -> ImageResizeConfig:
        return ImageResizeConfig(mode=mode, min_dims=min_dims, max_dim=max_dim, target_pixel_area=area)  # type: ignore[arg-type]

    def dataset(name: str, factor: float = 1.0, train_resize: ImageResizeConfig | None = None,
                **inference: Any) -> DatasetConfig:
        row = DATASETS[name]
        training = DatasetTrainingConfig(frame_sampling_multiplicative_factor=factor,
                                         image_resize=train_resize or ImageResizeConfig())
        return DatasetConfig(type=row.task, num_classes=row.num_classes, training=training,
                             inference=DatasetInferenceConfig(**inference))

    tuned = {  # the datasets whose settings differ from the defaults; every other row gets the defaults
        "YOUTUBE_VIS": dataset("YOUTUBE_VIS", 10.0, resize("min_dim", [360, 480], 1024),
                               image_resize=resize("min_dim", [360], 1333, 300000)),
        "OVIS": dataset("OVIS", 10.0, resize("min_dim", [360, 480], 1024),
                        image_resize=resize("min_dim", [360], 1333, 300000), max_tracks_per_video=20),
        "KITTI_STEP": dataset("KITTI_STEP", 3.0, resize("min_dim", [320]), clip_length=6, frame_overlap=3,
                              image_resize=resize("none", [240]), max_tracks_per_clip=1000, track_score_threshold=0.5),
        "CITYSCAPES_VPS": dataset("CITYSCAPES_VPS", 1.0, resize("min_dim", [448]), clip_length=10, frame_overlap=5,
                                  image_resize=resize("none", [736], 2048), max_tracks_per_clip=1000,
                                  track_score_threshold=0.5, sparse_frames=True),
        "VIPSEG": dataset("VIPSEG", 5.0, resize("min_dim", [512]), image_resize=resize("min_dim", [576]),
                          max_tracks_per_clip=1000, track_score_threshold=0.5),
        "DAVIS": dataset("DAVIS", 20.0, resize("min_dim", [480]), image_resize=resize("none", [360])),
        "BURST": dataset("BURST", 3.0, resize("min_dim", [512]), clip_length=8, frame_overlap=4,
                         image_resize=resize("min_dim", [512]), mode="point"),
    }
    return {name: tuned[name] if name in tuned else dataset(name) for name in DATASETS}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=_default_datasets)

    def __post_init__(self) -> None:
        missing = [name for name in self.training.dataset_list if name not in self.datasets]
        if missing:
            raise ConfigError(f"training.dataset_list names datasets with no entry under datasets: {missing}")
        if self.model.backbone_norm != "FrozenBN" and self.training.pretrained_backbone is not None:
            raise ConfigError(f"training.pretrained_backbone is set, but ImageNet weights are for a FrozenBN ResNet "
                              f"and model.backbone_norm is {self.model.backbone_norm}")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


# ----------------------------------------------------------------------------------------------------------
# Building dataclasses from plain data, strictly


def semantic_classes(cfg: Config) -> dict[str, int]:
    """Classes of every VIS/VPS dataset in the training list: the datasets the model has semantic queries for."""
    return {
        name: cfg.datasets[name].num_classes
        for name in cfg.training.dataset_list
        if cfg.datasets[name].type in (Task.VIS, Task.VPS)
    }


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, current: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and convert it; `current` is the value it merges onto
    (for nested dataclasses and dicts)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {type(value).__name__} {value!r}")
        return _merge_dataclass(current, value, key, cls=tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(value, non_none[0], current, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [member.value for member in tp]
        if value not in allowed:
            raise ConfigError(f"'{key}' must be one of {allowed}, got {value!r}")
        return tp(value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"'{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {type(value).__name__} {value!r}")
        return [_convert(v, args[0], None, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"'{key}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, None, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {type(value).__name__} {value!r}")
        merged = dict(current or {})
        for name, item in value.items():
            merged[str(name)] = _convert(item, args[1], merged.get(str(name)), f"{key}.{name}")
        return merged
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ConfigError(f"'{key}' must be a {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config schema: unsupported annotation {tp!r} for '{key}'")


def _merge_dataclass(current: Any, data: dict[str, Any], prefix: str, cls: type | None = None) -> Any:
    """`current` with `data` merged over it, as a new instance; with `current` None, a new `cls` from its
    defaults and `data`, which must then hold every field that has no default. Unknown keys raise."""
    cls = cls or type(current)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    changes = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key '{full}' (known keys here: {sorted(fields)})")
        base = getattr(current, key) if current is not None else None
        changes[key] = _convert(value, hints[key], base, full)
    if current is None:
        missing = [name for name, f in fields.items() if name not in changes
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"'{prefix}' is missing required key(s) {missing}")
    try:
        return cls(**changes) if current is None else dataclasses.replace(current, **changes)
    except ConfigError as err:
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


# ----------------------------------------------------------------------------------------------------------
# The original TarViS config.yaml

# Keys of the original that have no effect there either, or only one value in every released config.
_ORIGINAL_KEYS_WITHOUT_EFFECT = {
    "INPUT",  # PIXEL_MEAN/STD/RGB: the model uses its own pixel_mean/pixel_std buffers (SPEC §2.1)
    "TRAINING.ACCUMULATE_GRADIENTS",  # always true: batch_size is global and accumulated
    "TRAINING.PRETRAIN_AUGMENTATION_TYPE",  # "crop" is the only path used
    "POSTPROCESS_ON_CPU",  # a memory switch of the original's inference; ours streams clip by clip
    "SHARED_SEMSEG_QUERIES",  # false in every released config
}


def is_original_config(data: dict[str, Any]) -> bool:
    """The original's files have upper-case top-level keys (MODEL, TRAINING, DATASETS, INPUT)."""
    return bool(data) and all(isinstance(k, str) and k.isupper() for k in data)


def from_original(data: dict[str, Any]) -> dict[str, Any]:
    """Map an original TarViS config (upper-case keys, SPEC §4) onto our key names."""

    def convert(node: Any, path: str, names_are_keys: bool) -> Any:
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            full = f"{path}.{key}" if path else key
            if full in _ORIGINAL_KEYS_WITHOUT_EFFECT or key in _ORIGINAL_KEYS_WITHOUT_EFFECT:
                continue
            name = key if names_are_keys else key.lower()
            if key == "MIN_DIMS" and isinstance(value, int):
                value = [value]  # the original accepts a bare int at inference
            out[name] = convert(value, full, names_are_keys=(key == "DATASETS"))
        return out

    return convert(data, "", names_are_keys=False)


# ----------------------------------------------------------------------------------------------------------
# Files and overrides


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _load_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The file and its `_base_` ancestors, oldest first, each mapped to our key names."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `_base_` chain loops back on itself")
    data = _read_yaml(path)
    if is_original_config(data):
        return [(path, from_original(data))]
    base = data.pop("_base_", None)
    if base is None:
        return [(path, data)]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: '_base_' must be a path relative to this file, got {base!r}")
    return _load_layers(path.parent / base, seen + (path,)) + [(path, data)]


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """`["--cfg.model.backbone", "SwinLarge", ...]` -> nested dict; values are parsed as YAML."""
    out: dict[str, Any] = {}
    args = list(args)
    if len(args) % 2:
        raise ConfigError(f"config overrides come in '--cfg.KEY VALUE' pairs; got {args}")
    for flag, text in zip(args[::2], args[1::2]):
        if not flag.startswith("--cfg.") or len(flag) <= len("--cfg."):
            raise ConfigError(f"config override must look like '--cfg.section.key value', got {flag!r}")
        keys = flag[len("--cfg."):].split(".")
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        try:
            node[keys[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{flag}: value {text!r} is not valid YAML: {err}") from None
    return out


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `--cfg.KEY VALUE` pairs from the other command-line arguments (which go to argparse)."""
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("--cfg."):
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"config override {argv[i]} has no value")
            overrides += argv[i : i + 2]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return rest, overrides


def build_config(layers: Sequence[tuple[str, dict[str, Any]]]) -> Config:
    """Merge (source, data) layers in order over the defaults; errors name the source."""
    cfg = Config()
    for source, data in layers:
        try:
            cfg = _merge_dataclass(cfg, data, "")
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load our YAML (with its `_base_` chain) or an original TarViS config.yaml, then apply overrides."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers += [(str(p), d) for p, d in _load_layers(Path(path))]
    if overrides:
        layers.append(("command-line overrides", parse_overrides(overrides)))
    return build_config(layers)


def load_checkpoint_config(checkpoint: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """The `config.yaml` beside a checkpoint (ours or the original's), which must exist and say something: an
    empty one would give the default model, and the checkpoint would then fail to load with a list of hundreds
    of missing keys instead of this message."""
    path = Path(checkpoint).parent / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found: the checkpoint's config.yaml does not exist "
                                "(it lies beside the checkpoint; from Python, config=... names another file)")
    if not _read_yaml(path):
        raise ConfigError(f"{path}: the checkpoint's config is empty; it must describe the checkpoint's model")
    return load_config(path, overrides)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the complete config as YAML, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        yaml.safe_dump(cfg.to_dict(), handle, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tarvis_fast.config [FILE] [--cfg.KEY VALUE ...]` prints the effective config as YAML."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tarvis_fast.config", description=main.__doc__)
    parser.add_argument("file", nargs="?", help="our YAML or an original TarViS config.yaml")
    add_debug_flag(parser)
    rest, overrides = split_overrides(argv)
    cfg = load_config(parser.parse_args(rest).file, overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
