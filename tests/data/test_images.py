"""Image panoptic datasets as pseudo-videos (COCO-panoptic layout): reading, thing filtering, the per-frame affine
warp checked against a direct back-projection onto the source annotation, VIS / VPS / VOS / PET targets of one draw,
the datasets' rules, bad data, and the loader in a pre-training config."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from tarvis_fast.config import build_config
from tarvis_fast.data.images import affine_matrix
from tarvis_fast.data.loader import build_train_loader
from tarvis_fast.data.sources import build_source
from tarvis_fast.data.videos import DataError
from tarvis_fast.formats.coco_panoptic import CocoPanopticError, read_coco_panoptic
from tarvis_fast.formats.panoptic import write_panoptic_png
from tarvis_fast.tasks import Task

H, W = 60, 80
OUT = 48                       # pretrain_image_size: per-frame shorter side 48, 80 or 112
# categories in file order: class = position + 1, semantic label = position
CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 3, "name": "car", "isthing": 1},
              {"id": 95, "name": "odd", "isthing": 1},            # a thing by its flag, stuff by COCO's id <= 90
              {"id": 100, "name": "sky", "isthing": 0}, {"id": 101, "name": "ground", "isthing": 0}]
LABEL = {c["id"]: i for i, c in enumerate(CATEGORIES)}
UNLISTED = 77                  # a segment id in a PNG but not in the json: void
BLUE = np.zeros(256, np.int64)  # the blue of a segment's pixels in the frames: where the image's pixels came from
BLUE[[10, 11, 21, 22, 23, 24, 30, UNLISTED]] = [40, 80, 120, 160, 200, 240, 100, 20]


def _image0() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Segment ids of image 0 and its (segment id, category id): sky above, ground below, void stripe at the left,
    an unlisted id, two people, a car and an 'odd'."""
    ids = np.zeros((H, W), np.int64)
    ids[:H // 2, 6:] = 10
    ids[H // 2:, 6:] = 11
    ids[40:50, 60:70] = UNLISTED
    ids[10:40, 12:24] = 21
    ids[20:45, 30:40] = 22
    ids[35:52, 44:58] = 23
    ids[5:15, 60:75] = 24
    return ids, [(10, 100), (11, 101), (21, 1), (22, 1), (23, 3), (24, 95)]


def _image2() -> np.ndarray:
    """Segment ids of image 2: a car (30) on sky (10), off-centre so that a flip shows."""
    ids = np.full((H, W), 10, np.int64)
    ids[15:45, 10:40] = 30
    return ids


def write_coco_panoptic(root: Path, *, cityscapes: bool = False) -> tuple[Path, Path, Path]:
    """images/, pan_maps/ and segments.json of three images: image 0 (`_image0`), image 1 stuff only (filtered out),
    image 2 one car on sky. Frames: red and green gradients, blue `BLUE[segment id]`."""
    ids0, segs0 = _image0()
    ids1 = np.full((H, W), 10, np.int64)
    entries = [(ids0, segs0), (ids1, [(10, 100)]), (_image2(), [(10, 100), (30, 3)])]
    images, annotations = [], []
    (root / "pan_maps").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:H, 0:W]
    for i, (ids, segments) in enumerate(entries):
        stem = f"city{i}_000000_{i:06d}_leftImg8bit" if cityscapes else f"{i:012d}"
        folder = root / "images" / (f"city{i}" if cityscapes else "")
        folder.mkdir(parents=True, exist_ok=True)
        frame = np.stack([BLUE[ids], yy * 4, xx * 3], -1).astype(np.uint8)   # BGR
        cv2.imwrite(str(folder / f"{stem}.png"), frame)   # PNG: exact pixels (any format cv2 reads will do)
        write_panoptic_png(root / "pan_maps" / f"{stem}.png", ids)
        images.append({"id": stem, "file_name": f"{stem}.png", "height": H, "width": W})
        annotations.append({"image_id": stem, "file_name": f"{stem}.png",
                            "segments_info": [{"id": s, "category_id": c, "iscrowd": 0} for s, c in segments]})
    path = root / "segments.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return root / "images", path, root / "pan_maps"


def _config(root: Path, name: str = "MY_COCO", out: int = OUT, **training):
    images, annotations, masks = write_coco_panoptic(root, cityscapes=name == "CITYSCAPES")
    dataset = {"type": "panoptic_seg", "num_classes": len(CATEGORIES), "training": {
        "layout": "coco_panoptic", "images": str(images), "annotations": str(annotations), "masks": str(masks)}}
    settings = {"dataset_list": [name], "dataset_weights": [1.0], "pretrain_image_size": [out, out], **training}
    return build_config([("test", {"datasets": {name: dataset}, "training": settings})])


# 48: the ids are condensed on the image and the colours jittered on it; 24: the clip has fewer pixels than the
# image, so the PNG is warped and condensed, and the colours jittered, on the frames
@pytest.fixture(scope="module", params=[OUT, 24], ids=["on_image", "on_frames"])
def source(tmp_path_factory, request):
    return build_source("MY_COCO", _config(tmp_path_factory.mktemp("coco"), out=request.param))


# ---------------------------------------------------------------------------------------------- the reference

def _source_maps() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per image: the expected instance map (segment id of a thing, 0 none) and label map (label + 1, 0 ignored)."""
    ids0, segs0 = _image0()
    out = {}
    for stem, ids, segments in ((f"{0:012d}", ids0, segs0), (f"{2:012d}", None, [(10, 100), (30, 3)])):
        if ids is None:
            ids = _image2()
        instance, label = np.zeros_like(ids), np.zeros_like(ids)
        for seg, cat in segments:
            label[ids == seg] = LABEL[cat] + 1
            if cat in (1, 3, 95):
                instance[ids == seg] = seg
        out[stem] = (instance, label)
    return out


def _back_project(meta: dict, t: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source (row, col), rounded, of every pixel of frame t (shape (h, w)), from its recorded augmentation."""
    p, (sh, sw) = meta["augment"][t], meta["source_size"]
    (rh, rw), (cy, cx) = p["resized"], p["crop"]
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    # crop, then the resize (pixel centres), then the inverse of the affine about the centre
    ry, rx = (yy + cy + 0.5) * sh / rh - 0.5, (xx + cx + 0.5) * sw / rw - 0.5
    inverse = cv2.invertAffineTransform(affine_matrix(sh, sw, p["scale"], p["rotate"], p["shear"]))
    sx = inverse[0, 0] * rx + inverse[0, 1] * ry + inverse[0, 2]
    sy = inverse[1, 0] * rx + inverse[1, 1] * ry + inverse[1, 2]
    if meta["flipped"]:
        sx = sw - 1 - sx
    return np.round(sy).astype(int), np.round(sx).astype(int)


def _check_against_source(map_t: np.ndarray, reference: np.ndarray, meta: dict, t: int) -> int:
    """Every pixel of `map_t` whose source position lies well inside a uniform region of `reference` (outside the
    image counts as 0: the affine fill) has that region's value; returns how many pixels were checked."""
    margin = 2
    padded = np.pad(reference, margin + 1, constant_values=0)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    values = np.unique(padded)
    uniform = np.zeros(padded.shape, bool)
    for v in values:  # a pixel whose neighbourhood holds one value only
        inside = cv2.erode((padded == v).astype(np.uint8), kernel, borderValue=0).astype(bool)
        uniform |= inside
    sy, sx = _back_project(meta, t, map_t.shape)
    py, px = np.clip(sy + margin + 1, 0, padded.shape[0] - 1), np.clip(sx + margin + 1, 0, padded.shape[1] - 1)
    height, width = reference.shape
    far = (sy < -margin) | (sy > height + margin) | (sx < -margin) | (sx > width + margin)  # well outside: fill
    checked = uniform[py, px] & ~far
    assert np.array_equal(map_t[checked], padded[py, px][checked])
    assert (map_t[far] == 0).all()
    return int(checked.sum())


# ---------------------------------------------------------------------------------------------- tests

def test_reader_and_thing_filtering(tmp_path, source):
    _, annotations, _ = write_coco_panoptic(tmp_path)
    data = read_coco_panoptic(annotations)
    assert [c.id for c in data.categories] == [1, 3, 95, 100, 101]
    assert [len(i.segments) for i in data.images] == [6, 1, 2]
    # image 1 has no thing segment: filtered out
    assert [image.id for image in source.images] == [f"{0:012d}", f"{2:012d}"]
    assert source.category_ids == {1: 1, 2: 3, 3: 95, 4: 100, 5: 101}
    # a dataset of its own: 'isthing' decides, so segment 24 (category 95) is an instance
    assert source.images[0].instance_ids == (21, 22, 23, 24)


def test_coco_things_are_ids_up_to_90(tmp_path):
    coco = build_source("COCO", _config(tmp_path, "COCO"))
    assert coco.images[0].instance_ids == (21, 22, 23)   # 95 is stuff in COCO
    assert coco.pseudo_video and coco.task is Task.VPS


@pytest.mark.parametrize("seed", range(12))
def test_warp_keeps_instances_and_labels_on_their_source_segments(source, seed):
    maps = _source_maps()
    sample = source.sample(np.random.default_rng(seed), Task.VPS)
    meta, out = sample.meta, source.settings.output_size[0]
    instance_ref, label_ref = maps[meta["source"]]
    T = sample.images.shape[0]
    assert tuple(sample.images.shape) == (T, 3, out, out) and meta["frames"] == [0] * T
    # every instance of the clip is one source segment; its class is its category's position + 1
    for i, seg in enumerate(meta["instance_ids"]):
        assert (instance_ref == seg).any()
        assert int(sample.classes[i]) == LABEL[meta["category_ids"][i]] + 1
    checked = 0
    for t in range(T):
        instance_t = np.zeros((out, out), np.int64)
        for i, seg in enumerate(meta["instance_ids"]):
            instance_t[sample.masks[i, t].numpy()] = seg
        checked += _check_against_source(instance_t, instance_ref, meta, t)
        label_t = np.where(sample.ignore[t].numpy(), 0, sample.semantic[t].numpy() + 1)
        _check_against_source(label_t, label_ref, meta, t)
        assert (sample.semantic[t][sample.ignore[t]] == 0).all()
    assert checked > out * out  # most pixels are checked exactly


@pytest.mark.parametrize("out", [OUT, 24])
def test_image_pixels_follow_the_masks(tmp_path, out):
    """The frames are warped as the id maps: with the colour augmentation off, a frame's blue is its source
    segment's blue wherever the source is uniform around the back-projected position."""
    source = build_source("MY_COCO", _config(tmp_path, out=out))
    source.settings = dataclasses.replace(source.settings, colour=SimpleNamespace(draw=lambda rng: lambda f: f))
    ids0 = _image0()[0]
    blue = {f"{0:012d}": BLUE[ids0], f"{2:012d}": BLUE[_image2()]}
    for seed in range(10):
        sample = source.sample(np.random.default_rng(seed), Task.VIS)
        for t in range(sample.images.shape[0]):
            _check_against_source(sample.images[t, 2].numpy().astype(np.int64), blue[sample.meta["source"]],
                                  sample.meta, t)


def test_ignore_covers_void_unlisted_ids_and_the_fill(source):
    """Unlabelled pixels, an id missing from the json and the affine fill are ignored; nothing else is."""
    for seed in range(10):
        sample = source.sample(np.random.default_rng(seed), Task.VPS)
        if sample.meta["source"] != f"{0:012d}":
            continue
        label_ref = _source_maps()[sample.meta["source"]][1]
        assert (label_ref[40:50, 60:70] == 0).all() and (label_ref[:, :6] == 0).all()
        for t in range(sample.images.shape[0]):
            sy, sx = _back_project(sample.meta, t, tuple(sample.images.shape[2:]))
            inside = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
            ignore = sample.ignore[t].numpy()
            # back-projected positions deep inside the void stripe are ignored, and so is most of the fill
            stripe = inside & (sx <= 3) & (sy >= 3) & (sy < H - 3)
            assert ignore[stripe].all()
            assert ignore[~inside].mean() > 0.9 if (~inside).sum() > 20 else True


def test_vis_vps_vos_pet_targets_of_one_draw_agree(source):
    for seed in range(8):
        vps = source.sample(np.random.default_rng(seed), Task.VPS)
        vis = source.sample(np.random.default_rng(seed), Task.VIS)
        assert torch.equal(vis.images, vps.images) and torch.equal(vis.masks, vps.masks)
        assert torch.equal(vis.classes, vps.classes) and vis.semantic is None and vis.ignore is None
        # the semantic map holds each instance's class under it
        for i in range(vps.num_objects):
            assert (vps.semantic[vps.masks[i]] == vps.classes[i] - 1).all()
            assert not vps.ignore[vps.masks[i]].any()
        for task in (Task.VOS, Task.PET):
            vos = source.sample(np.random.default_rng(seed), task)
            if vos.meta["source"] != vis.meta["source"] or vos.meta.get("retries") != vis.meta.get("retries"):
                continue
            order = vos.meta["order"]
            assert sorted(order) == list(range(vis.images.shape[0]))
            assert torch.equal(vos.images, vis.images[order])
            index = [vis.meta["instance_ids"].index(seg) for seg in vos.meta["instance_ids"]]
            assert torch.equal(vos.masks, vis.masks[index][:, order])
            # frame 0 is the reference: every object on it, and every instance visible there is an object
            assert vos.masks[:, 0].flatten(1).any(1).all()
            visible = {seg for k, seg in enumerate(vis.meta["instance_ids"]) if vis.masks[k, order[0]].any()}
            assert set(vos.meta["instance_ids"]) == visible
            assert (vos.points is not None) == (task is Task.PET)


def test_sources_pickle_for_the_worker_processes(tmp_path):
    import pickle
    for name in ("COCO", "MY_COCO"):
        source = build_source(name, _config(tmp_path / name, name))
        copy = pickle.loads(pickle.dumps(source))
        a, b = (s.sample(np.random.default_rng(4), Task.VPS) for s in (source, copy))
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)


def test_vos_objects_are_capped(tmp_path):
    cfg = _config(tmp_path)
    cfg.model.num_vos_queries_per_object = 16   # 32 // 16 = 2 objects at most
    capped = build_source("MY_COCO", cfg)
    counts = {capped.sample(np.random.default_rng(s), Task.VOS).num_objects for s in range(12)}
    assert max(counts) == 2


def test_cityscapes_rules_paths_and_one_crop_position(tmp_path):
    root = tmp_path / "cs"
    images, annotations, masks = write_coco_panoptic(root, cityscapes=True)
    content = json.loads(annotations.read_text())
    # Cityscapes' own flags: hasInstances decides things; ids -1 and 0 are ignored and -1 leaves the category list
    content["categories"] = [{"id": -1, "name": "license plate", "hasInstances": False},
                             {"id": 0, "name": "unlabeled", "hasInstances": False},
                             *[{"id": c["id"], "name": c["name"], "hasInstances": bool(c["isthing"])}
                               for c in CATEGORIES]]
    content["annotations"][0]["segments_info"][0]["category_id"] = 0   # the sky of image 0 becomes void
    annotations.write_text(json.dumps(content))
    dataset = {"type": "panoptic_seg", "num_classes": 6, "training": {
        "layout": "coco_panoptic", "images": str(images), "annotations": str(annotations), "masks": str(masks)}}
    cfg = build_config([("t", {"datasets": {"CITYSCAPES": dataset}, "training": {
        "dataset_list": ["CITYSCAPES"], "dataset_weights": [1.0], "pretrain_image_size": [OUT, OUT],
        "clip_length": 4}})])
    source = build_source("CITYSCAPES", cfg)
    assert source.category_ids == {1: 0, 2: 1, 3: 3, 4: 95, 5: 100, 6: 101}
    assert source.images[0].instance_ids == (21, 22, 23, 24)
    assert source.images[0].image.parent.name == "city0"
    for seed in range(5):
        sample = source.sample(np.random.default_rng(seed), Task.VPS)
        for axis in (0, 1):   # one relative crop position f for all frames: corner = round(f * room)
            low, high = 0.0, 1.0
            for p in sample.meta["augment"]:
                room = p["resized"][axis] - OUT
                if room > 0:
                    corner = p["crop"][axis]
                    low, high = max(low, (corner - 0.5) / room), min(high, (corner + 0.5) / room)
            assert low <= high
        if sample.meta["source"].startswith("city0"):
            labels = np.where(sample.ignore.numpy(), 0, sample.semantic.numpy() + 1)
            assert 5 not in np.unique(labels)   # sky (label 4) was made void


def test_mapillary_pre_resize_with_a_reduced_jpeg_decode(tmp_path):
    """Mapillary's images are first resized (shortest edge 800 there; 24 here): a JPEG twice as large as that is
    decoded at half size, the PNG resized with nearest, and the targets follow the resized annotation."""
    images, annotations, masks = write_coco_panoptic(tmp_path / "data")
    content = json.loads(annotations.read_text())
    for entry in content["images"]:
        png = images / entry["file_name"]
        entry["file_name"] = png.with_suffix(".jpg").name
        cv2.imwrite(str(images / entry["file_name"]), cv2.imread(str(png)))
    annotations.write_text(json.dumps(content))
    dataset = {"type": "panoptic_seg", "num_classes": len(CATEGORIES), "training": {
        "layout": "coco_panoptic", "images": str(images), "annotations": str(annotations), "masks": str(masks)}}
    cfg = build_config([("t", {"datasets": {"MAPILLARY": dataset}, "training": {
        "dataset_list": ["MAPILLARY"], "dataset_weights": [1.0], "pretrain_image_size": [16, 16]}})])
    source = build_source("MAPILLARY", cfg)
    assert source.rules.pre_resize == (800, 1333) and source.rules.fixed_crop
    source.rules = dataclasses.replace(source.rules, pre_resize=(24, 1333))
    rgb, png = source.load(source.images[0])
    assert rgb.shape == png.shape == (24, 32, 3)
    half = cv2.imread(str(source.images[0].image), cv2.IMREAD_REDUCED_COLOR_2)
    assert half.shape[:2] == (H // 2, W // 2)
    assert np.array_equal(rgb, cv2.cvtColor(cv2.resize(half, (32, 24), interpolation=cv2.INTER_LINEAR),
                                            cv2.COLOR_BGR2RGB))
    resized = {stem: tuple(cv2.resize(m.astype(np.int32), (32, 24), interpolation=cv2.INTER_NEAREST_EXACT)
                           for m in maps) for stem, maps in _source_maps().items()}
    for seed in range(6):
        sample = source.sample(np.random.default_rng(seed), Task.VPS)
        instance_ref, label_ref = resized[sample.meta["source"]]
        assert sample.meta["source_size"] == [24, 32]
        for t in range(sample.images.shape[0]):
            instance_t = np.zeros(sample.images.shape[2:], np.int64)
            for i, seg in enumerate(sample.meta["instance_ids"]):
                instance_t[sample.masks[i, t].numpy()] = seg
            _check_against_source(instance_t, instance_ref, sample.meta, t)
            _check_against_source(np.where(sample.ignore[t].numpy(), 0, sample.semantic[t].numpy() + 1), label_ref,
                                  sample.meta, t)


def test_bad_data_names_the_file(tmp_path):
    cfg = _config(tmp_path)
    images, annotations, masks = tmp_path / "images", tmp_path / "segments.json", tmp_path / "pan_maps"
    (images / f"{0:012d}.png").unlink()
    source = build_source("MY_COCO", cfg)
    with pytest.raises(DataError, match=f"{0:012d}.png: image not found"):
        for seed in range(20):
            source.sample(np.random.default_rng(seed), Task.VIS)
    write_panoptic_png(masks / f"{2:012d}.png", np.zeros((H + 2, W), np.int64))
    with pytest.raises(DataError, match=f"{2:012d}.png: size"):
        for seed in range(20):
            source.sample(np.random.default_rng(seed), Task.VIS)
    content = json.loads(annotations.read_text())
    content["annotations"][0]["segments_info"][0]["category_id"] = 555
    annotations.write_text(json.dumps(content))
    with pytest.raises(DataError, match="segments.json.*unknown category_id 555"):
        build_source("MY_COCO", cfg)
    with pytest.raises(CocoPanopticError, match="'categories' must be a non-empty list"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
        read_coco_panoptic(bad)


def test_too_many_categories_for_num_classes(tmp_path):
    cfg = _config(tmp_path)
    cfg.datasets["MY_COCO"].num_classes = 3
    with pytest.raises(DataError, match="5 categories, but datasets.MY_COCO.num_classes is 3"):
        build_source("MY_COCO", cfg)


def test_loader_pretrains_on_a_pseudo_video_dataset(tmp_path):
    cfg = _config(tmp_path, pretraining=True, batch_size=2, num_iterations=8, sample_chunking_factor=1,
                  point_vos_task_sample_likelihood=0.5,
                  pretrain_task_weights={"instance_seg": 1.0, "panoptic_seg": 1.0, "vos": 1.0})
    loader = build_train_loader(cfg, rank=0, world_size=1, micro_batch_size=2, seed=3, num_workers=1)
    tasks = []
    for iteration, micro_step, batch in loader:
        tasks.append(batch.task)
        assert tuple(batch.images.shape[:3]) == (2, cfg.training.clip_length, 3)
        assert tuple(batch.images.shape[3:]) == (OUT, OUT)
        if batch.task.guided_by_objects:   # trimmed to the clip with the fewest objects
            assert batch.targets.masks.shape[1] == min(len(m["instance_ids"]) for m in batch.meta)
            assert batch.targets.masks[:, :, 0].flatten(2).any(2).all()
    assert len(tasks) == 8 and len(set(tasks)) >= 3
    assert "unusable" in loader.report() or "no unusable" in loader.report()


def test_preview_of_a_pseudo_video(tmp_path):
    from tarvis_fast.data.preview import write_previews
    source = build_source("MY_COCO", _config(tmp_path / "data"))
    written = write_previews(source, tmp_path / "preview", samples=2, seed=0, pet_likelihood=0.0)
    for path in written:
        record = json.loads(Path(path).read_text())
        assert record["task"] == "vps" and record["frames"] == [0, 0, 0] and record["size"] == [OUT, OUT]
        assert {t["name"] for t in record["targets"]} <= {"person", "car", "odd"}
        assert Path(path).with_suffix(".png").exists()
