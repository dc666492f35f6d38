"""Where a new run's weights come from: the fine-tuning transfer of SPEC §5.5 and ImageNet backbones in the
layouts users have (torchvision and detectron2 ResNets, official and Mask2Former Swins), written by the tests."""
from __future__ import annotations

import pickle
import re
import warnings

import pytest
import torch
import yaml
from helpers.tiny import tiny_model

from tarvis_fast.config import ConfigError, load_config
from tarvis_fast.model import build_model
from tarvis_fast.model.backbones import ResNet, SwinTransformer
from tarvis_fast.model.backbones.resnet import BLOCKS_PER_STAGE
from tarvis_fast.model.queries import semantic_query_layout
from tarvis_fast.training.init_weights import (
    CITYSCAPES_ID_OF_TRAIN_ID,
    SEMANTIC_QUERIES,
    find_pretrained_backbone,
    finetune_state_dict,
    init_for_training,
    load_finetune_start,
    load_pretrained_backbone,
)

PRETRAIN = {"ADE20K": 150, "CITYSCAPES": 34, "COCO": 133, "MAPILLARY": 65}
FINETUNE = {"CITYSCAPES_VPS": 19, "KITTI_STEP": 19, "YOUTUBE_VIS": 40}


def test_finetune_transfers_row_zero_and_the_cityscapes_queries(tmp_path):
    pretrained = tiny_model(seed=1, semantic_classes=PRETRAIN)
    model = tiny_model(seed=2, semantic_classes=FINETUNE)
    initial = model.state_dict()[SEMANTIC_QUERIES].clone()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"training": {
        "dataset_list": list(PRETRAIN), "dataset_weights": [1.0] * len(PRETRAIN)}}))
    torch.save({"model": pretrained.state_dict()}, tmp_path / "000010.pth")
    load_finetune_start(model, tmp_path / "000010.pth")

    source = pretrained.state_dict()[SEMANTIC_QUERIES]
    queries = model.state_dict()[SEMANTIC_QUERIES]
    assert source.shape[0] == 1 + 382 and queries.shape[0] == 1 + 78
    assert torch.equal(queries[0], source[0])
    layout = semantic_query_layout(FINETUNE)
    # KITTI-STEP and Cityscapes-VPS train id i <- pre-trained Cityscapes id CITYSCAPES_ID_OF_TRAIN_ID[i] (row 151 + id)
    assert semantic_query_layout(PRETRAIN)["CITYSCAPES"][0] == 151
    for name in ("KITTI_STEP", "CITYSCAPES_VPS"):
        start, end = layout[name]
        for train_id in range(19):
            assert torch.equal(queries[start + train_id], source[151 + CITYSCAPES_ID_OF_TRAIN_ID[train_id]])
    start, end = layout["YOUTUBE_VIS"]
    assert torch.equal(queries[start:end], initial[start:end])  # no transfer: keeps its random initialisation
    for key, value in pretrained.state_dict().items():
        if key != SEMANTIC_QUERIES:
            assert torch.equal(model.state_dict()[key], value), key


def test_finetune_refuses_other_architectures():
    pretrained = tiny_model(semantic_classes=PRETRAIN).state_dict()
    model = tiny_model(semantic_classes=FINETUNE, num_instance_queries=12)
    with pytest.raises(ValueError, match="does not fit the model.*_instance_queries"):
        finetune_state_dict(pretrained, model.state_dict(), PRETRAIN, FINETUNE)


# -- ImageNet backbones ------------------------------------------------------------------------------------------


def _torchvision_name(key: str) -> str:
    """Our (detectron2) ResNet names back to torchvision's."""
    key = re.sub(r"^stem\.conv1\.norm\.", "bn1.", key).replace("stem.conv1.", "conv1.")
    key = re.sub(r"^res(\d)", lambda m: f"layer{int(m[1]) - 1}", key)
    key = re.sub(r"conv(\d)\.norm\.", r"bn\1.", key)
    return key.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")


def assert_loaded(module: torch.nn.Module, expected: dict[str, torch.Tensor], skip: str = "$^") -> None:
    for key, value in module.state_dict().items():
        if not re.search(skip, key):
            assert torch.equal(value, expected[key]), key


@pytest.fixture(scope="module")
def resnet50_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v + 0.5 for k, v in ResNet(BLOCKS_PER_STAGE[50]).state_dict().items()}  # not the init values


def test_resnet_from_torchvision_and_detectron2_files(tmp_path, resnet50_weights):
    torchvision = {_torchvision_name(k): v for k, v in resnet50_weights.items()}
    torchvision.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    torch.save(torchvision, tmp_path / "resnet50.pth")
    detectron2 = {"model": {k: v.numpy() for k, v in resnet50_weights.items()} | {"fc1000.weight": torch.zeros(2).numpy()},
                  "__author__": "torchvision", "matching_heuristics": True}
    with open(tmp_path / "R-50.pkl", "wb") as handle:
        pickle.dump(detectron2, handle)
    for name in ("resnet50.pth", "R-50.pkl"):
        backbone = ResNet(BLOCKS_PER_STAGE[50])
        load_pretrained_backbone(backbone, tmp_path / name)
        assert_loaded(backbone, resnet50_weights)


def small_swin(window: int) -> SwinTransformer:
    return SwinTransformer(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window=window,
                           drop_path_rate=0.0)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_swin_from_official_files_resizing_the_position_tables(tmp_path, suffix):
    torch.manual_seed(0)
    official = {k: v for k, v in small_swin(7).state_dict().items()
                if not re.fullmatch(r"norm\d\..*|.*relative_position_index", k)}
    official.update({"norm.weight": torch.ones(192), "head.weight": torch.zeros(1000, 192)})
    path = tmp_path / f"swin_tiny_patch4_window7_224{suffix}"
    if suffix == ".pth":
        torch.save({"model": official}, path)
    else:  # Mask2Former's conversion: numpy arrays under "model"
        with open(path, "wb") as handle:
            pickle.dump({"model": {k: v.numpy() for k, v in official.items()}, "__author__": "third_party"}, handle)

    same_window = small_swin(7)
    load_pretrained_backbone(same_window, path)
    assert_loaded(same_window, official, skip=r"^norm\d|relative_position_index")

    other_window = small_swin(12)
    load_pretrained_backbone(other_window, path)
    assert_loaded(other_window, official, skip=r"^norm\d|relative_position")
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    table = other_window.state_dict()[key]
    assert table.shape == (23 * 23, 1) and official[key].shape == (13 * 13, 1)
    # bicubic resizing keeps the table's centre (offset 0) close to the original's
    assert table[11 * 23 + 11].item() == pytest.approx(official[key][6 * 13 + 6].item(), abs=0.05)


def test_backbone_files_are_found_in_the_workspace_or_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TARVIS_WORKSPACE_DIR", str(tmp_path))
    assert find_pretrained_backbone("SwinTiny") is None
    (tmp_path / "pretrained_backbones").mkdir()
    (tmp_path / "pretrained_backbones" / "swin_tiny_patch4_window7_224.pth").touch()
    assert find_pretrained_backbone("SwinTiny").name == "swin_tiny_patch4_window7_224.pth"
    with pytest.raises(FileNotFoundError):
        find_pretrained_backbone("SwinTiny", str(tmp_path / "missing.pth"))


def test_without_weights_the_backbone_starts_from_scratch_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TARVIS_WORKSPACE_DIR", str(tmp_path))
    cfg = load_config(None, ["--cfg.model.hidden_dim", "32", "--cfg.model.num_heads", "2", "--cfg.model.decoder_layers",
                             "1", "--cfg.model.neck_layers", "1", "--cfg.training.dataset_list", "[DAVIS]"])
    with torch.device("meta"):
        model = build_model(cfg)
    with pytest.warns(UserWarning) as warned:
        assert "from scratch" in init_for_training(model, cfg, None)
    messages = [str(w.message) for w in warned]
    assert any("without --finetune_from" in m for m in messages)  # the default config is a fine-tuning one
    assert any(re.search("no ImageNet weights for ResNet50.*R-50.pkl", m) for m in messages)


def test_a_group_norm_resnet_trains_from_scratch_without_looking_for_weights(tmp_path, monkeypatch, resnet50_weights):
    """model.backbone_norm GN takes no ImageNet weights (they hold frozen-BN statistics): none are looked for, none
    may be named, and there is nothing to warn about."""
    monkeypatch.setenv("TARVIS_WORKSPACE_DIR", str(tmp_path))
    (tmp_path / "pretrained_backbones").mkdir()
    torch.save(resnet50_weights, tmp_path / "pretrained_backbones" / "resnet50.pth")  # would be loaded with FrozenBN
    small = ["--cfg.model.hidden_dim", "32", "--cfg.model.num_heads", "2", "--cfg.model.decoder_layers", "1",
             "--cfg.model.neck_layers", "1", "--cfg.training.dataset_list", "[DAVIS]",
             "--cfg.training.pretraining", "true", "--cfg.model.backbone_norm", "GN"]
    cfg = load_config(None, small)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.backbone.backbone.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert init_for_training(model, cfg, None) == "training from scratch: ResNet50 with model.backbone_norm GN"
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.backbone.state_dict().items())
    with pytest.raises(ConfigError, match="ImageNet weights are for a FrozenBN ResNet"):
        load_config(None, [*small, "--cfg.training.pretrained_backbone", str(tmp_path / "resnet50.pth")])
    with pytest.raises(ConfigError, match="model.backbone_norm GN is for ResNets"):
        load_config(None, ["--cfg.model.backbone", "SwinTiny", "--cfg.model.backbone_norm", "GN"])
