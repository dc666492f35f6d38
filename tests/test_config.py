"""Typed config: strict loading, overrides, round trip, and the original TarViS config.yaml."""
from pathlib import Path

import pytest
import yaml

from tarvis_fast.config import Config, ConfigError, load_config, parse_overrides, save_config

REPO = Path(__file__).resolve().parents[1]

# An original TarViS config.yaml as a fine-tuning run dumps it (upper-case keys, SPEC §4): a full dump has
# every section; this one keeps the keys that matter plus some with no effect (INPUT, POSTPROCESS_ON_CPU...).
ORIGINAL_FINETUNE_DUMP = """
DATASETS:
  CITYSCAPES_VPS:
    INFERENCE:
      CLIP_LENGTH: 10
      FRAME_OVERLAP: 5
      IMAGE_RESIZE: {MAX_DIM: 2048, MIN_DIMS: 736, MODE: none}
      MAX_TRACKS_PER_CLIP: 1000
      POSTPROCESS_ON_CPU: false
      SPARSE_FRAMES: true
      TRACK_SCORE_THRESHOLD: 0.5
    NUM_CLASSES: 19
    SHARED_SEMSEG_QUERIES: false
    TYPE: panoptic_seg
  DAVIS:
    INFERENCE: {CLIP_LENGTH: 12, FRAME_OVERLAP: 6, IMAGE_RESIZE: {MODE: none}}
    TYPE: vos
  YOUTUBE_VIS:
    INFERENCE:
      CLIP_LENGTH: 12
      FRAME_OVERLAP: 6
      IMAGE_RESIZE: {MIN_DIMS: 448, MODE: min_dim}
    NUM_CLASSES: 40
    TYPE: instance_seg
INPUT:
  PIXEL_MEAN: [103.53, 116.28, 123.675]
  RGB: true
MODEL:
  BACKBONE: SwinLarge
  CROSS_ATTENTION_TYPE: hard_masked
  NUM_BACKGROUND_QUERIES: 1
  NUM_OBJECT_QUERIES: 128
  NUM_VOS_QUERIES_PER_OBJECT: 4
TRAINING:
  ACCUMULATE_GRADIENTS: true
  BATCH_SIZE: 32
  DATASET_LIST: [YOUTUBE_VIS, CITYSCAPES_VPS, DAVIS]
  DATASET_WEIGHTS: [0.5, 0.3, 0.2]
  LOSSES: {INSTANCE_SEMANTIC_WEIGHT_CROSS_ENTROPY: 1.0, SEMANTIC_REGULARIZATION_LOSS: true}
  LR_DECAY_STEPS: [50000, 84000]
  LR_DECAY_RATES: [0.1, 0.1]
  PRETRAIN_TASK_WEIGHTS: {INSTANCE_SEG: 0.3, PANOPTIC_SEG: 0.3, VOS: 0.4}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_original_config_yaml_maps_onto_ours(tmp_path):
    cfg = load_config(write(tmp_path, "config.yaml", ORIGINAL_FINETUNE_DUMP))
    assert cfg.model.backbone == "SwinLarge"
    assert cfg.model.num_object_queries == 128 and cfg.model.num_vos_queries_per_object == 4
    assert cfg.training.batch_size == 32
    assert cfg.training.dataset_list == ["YOUTUBE_VIS", "CITYSCAPES_VPS", "DAVIS"]
    assert cfg.training.losses.instance_semantic_weight_cross_entropy == 1.0
    assert cfg.training.losses.semantic_regularization_loss is True
    assert cfg.training.pretrain_task_weights.vos == 0.4
    cvps = cfg.datasets["CITYSCAPES_VPS"].inference
    assert (cvps.clip_length, cvps.frame_overlap, cvps.sparse_frames) == (10, 5, True)
    assert cvps.image_resize.mode == "none" and cvps.image_resize.min_dims == [736]  # bare int -> list
    ytvis = cfg.datasets["YOUTUBE_VIS"]
    assert ytvis.type == "instance_seg" and ytvis.num_classes == 40
    assert ytvis.inference.image_resize.min_dims == [448]


def test_original_config_with_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "config.yaml", ORIGINAL_FINETUNE_DUMP.replace("NUM_OBJECT_QUERIES", "NUM_OBJ_QUERIES"))
    with pytest.raises(ConfigError, match=r"config\.yaml.*unknown key 'model\.num_obj_queries'"):
        load_config(path)


def test_repository_configs_give_the_released_settings():
    """Effective fine-tune settings per SPEC §4 (tables "Training defaults" and "Inference settings")."""
    cfg = load_config(REPO / "configs" / "finetune_resnet50_swin-tiny.yaml")
    assert cfg.model.backbone == "SwinTiny" and cfg.model.num_object_queries == 128
    assert cfg.training.num_iterations == 90000 and cfg.training.lr_warmup_iterations == 10000
    assert cfg.training.lr_decay_steps == [50000, 84000]
    assert cfg.training.losses.panoptic_semantic_num_points == 50176
    expected_inference = {  # dataset: (clip length, overlap, resize mode, min dim, tracks/clip, threshold)
        "YOUTUBE_VIS": (12, 6, "min_dim", 448, 10, 0.0),
        "OVIS": (12, 6, "min_dim", 576, 10, 0.0),
        "DAVIS": (12, 6, "none", None, None, None),
        "BURST": (8, 4, "min_dim", 512, None, None),
        "KITTI_STEP": (6, 3, "none", None, 1000, 0.5),
        "CITYSCAPES_VPS": (10, 5, "none", None, 1000, 0.5),
        "VIPSEG": (12, 6, "min_dim", 576, 1000, 0.5),
    }
    for name, (clip, overlap, mode, min_dim, tracks, threshold) in expected_inference.items():
        inf = cfg.datasets[name].inference
        assert (inf.clip_length, inf.frame_overlap, inf.image_resize.mode) == (clip, overlap, mode), name
        if min_dim is not None:
            assert inf.image_resize.min_dims == [min_dim], name
        if tracks is not None:
            assert (inf.max_tracks_per_clip, inf.track_score_threshold) == (tracks, threshold), name
    large = load_config(REPO / "configs" / "finetune_swin-large.yaml")
    assert large.model.backbone == "SwinLarge"
    losses = large.training.losses
    assert (losses.instance_semantic_weight_cross_entropy, losses.semantic_ignore_null_classes,
            losses.semantic_regularization_loss) == (1.0, False, True)
    assert load_config(REPO / "configs" / "pretrain_swin-large.yaml").training.losses.semantic_ignore_null_classes


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_round_trips(tmp_path, path):
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_overrides_are_typed_and_strict(tmp_path):
    cfg = load_config(None, ["--cfg.model.backbone", "SwinLarge", "--cfg.training.dataset_list", "[DAVIS]",
                             "--cfg.training.dataset_weights", "[1]"])
    assert cfg.model.backbone == "SwinLarge" and cfg.training.dataset_list == ["DAVIS"]
    assert cfg.training.dataset_weights == [1.0]
    with pytest.raises(ConfigError, match="command-line overrides.*'model.num_object_queries' must be an integer"):
        load_config(None, ["--cfg.model.num_object_queries", "many"])
    with pytest.raises(ConfigError, match=r"'model.backbone' must be one of"):
        load_config(None, ["--cfg.model.backbone", "ResNet152"])
    with pytest.raises(ConfigError, match="pairs"):
        parse_overrides(["--cfg.model.backbone"])
    with pytest.raises(ConfigError, match="must look like"):
        parse_overrides(["--model.backbone", "x"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {num_heads: 8.5}", "'model.num_heads' must be an integer"),
        ("model: {num_heads: true}", "'model.num_heads' must be an integer"),
        ("training: {batch_size: 8, surprise: 1}", "unknown key 'training.surprise'"),
        ("datasets: {NEW: {num_classes: 3}}", "'datasets.NEW' is missing required key"),
        ("datasets: {DAVIS: {inference: {clip_length: 4, frame_overlap: 4}}}", "frame_overlap"),
        ("datasets: {DAVIS: {inference: {clip_length: 5, frame_overlap: 3}}}", "at most half of clip_length"),
        ("model: {backbone: SwinTiny, backbone_norm: GN}", "backbone_norm GN is for ResNets"),
        ("training: {dataset_list: [NOPE], dataset_weights: [1.0]}", "no entry under datasets"),
        ("training: {dataset_weights: [0.5, 0.5]}", "same length"),
        ("- just a list", "top level must be a mapping"),
        ("model: [1, 2", "not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "bad.yaml" in str(err.value)


def test_base_chain(tmp_path):
    write(tmp_path, "parent.yaml", "model: {backbone: SwinTiny, num_heads: 4}")
    child = write(tmp_path, "child.yaml", "_base_: parent.yaml\nmodel: {num_heads: 2}")
    cfg = load_config(child)
    assert (cfg.model.backbone, cfg.model.num_heads) == ("SwinTiny", 2)
    write(tmp_path, "loop.yaml", "_base_: loop.yaml")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_new_dataset_entry_and_defaults():
    cfg = load_config(None, ["--cfg.datasets.MYVIS", "{type: instance_seg, num_classes: 3}"])
    assert cfg.datasets["MYVIS"].num_classes == 3
    assert cfg.datasets["MYVIS"].inference.clip_length == 12
    assert Config().datasets["OVIS"].inference.max_tracks_per_video == 20
    assert yaml.safe_load(yaml.safe_dump(Config().to_dict()))["model"]["bg_grid_size"] == [4, 4]


def test_split_overrides_leaves_other_arguments():
    from tarvis_fast.config import split_overrides

    rest, overrides = split_overrides(["ckpt.pth", "--cfg.model.num_heads", "4", "--amp", "--cfg.training.batch_size", "2"])
    assert rest == ["ckpt.pth", "--amp"]
    assert overrides == ["--cfg.model.num_heads", "4", "--cfg.training.batch_size", "2"]
    with pytest.raises(ConfigError, match="has no value"):
        split_overrides(["--cfg.model.num_heads"])
    with pytest.raises(ConfigError, match="--cfg.model.num_heads has no value"):
        split_overrides(["--cfg.model.num_heads", "--output_dir", "out"])
    assert split_overrides(["--cfg.training.base_lr", "-1e-4"])[1] == ["--cfg.training.base_lr", "-1e-4"]
