"""Synthetic video-panoptic and BURST data sets, for tests and benchmarks of the metrics.

Scenes are horizontal stuff bands whose borders jitter, plus moving thing rectangles that sometimes vanish, plus
void patches. A prediction is the ground truth disturbed the way trackers fail: shifted frames, identity switches,
wrong classes, spurious objects, stuff confusions and void. Everything is drawn from one seeded generator, so a seed
always gives the same files (which is what lets tests pin an official evaluator's numbers to a seed).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tarvis_fast.formats import burst, kitti_step, panoptic
from tarvis_fast.formats.panoptic import Category, Segment
from tarvis_fast.formats.rle import encode_rle


def categories(num_classes: int, things: set[int], seed: int = 123) -> dict[int, Category]:
    """Categories 0..num_classes-1 with random base colours."""
    rng = np.random.default_rng(seed)
    return {i: Category(i, f"class{i}", i in things, tuple(int(v) for v in rng.integers(0, 256, 3)))
            for i in range(num_classes)}


def scene(rng: np.random.Generator, frames: int, height: int, width: int, stuff: Sequence[int],
          things: Sequence[int], objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth (semantic, instance) maps, both (T, H, W) int64; void is 255."""
    semantic = np.zeros((frames, height, width), np.int64)
    instance = np.zeros_like(semantic)
    borders = np.sort(rng.integers(1, height, len(stuff) - 1))
    tracks = []
    for k in range(objects):
        h, w = int(rng.integers(3, height // 2)), int(rng.integers(3, width // 2))
        tracks.append((int(rng.choice(things)), k + 1, h, w, int(rng.integers(0, height - h)),
                       int(rng.integers(0, width - w)), rng.integers(-2, 3, 2), rng.random(frames) > 0.15))
    for t in range(frames):
        jittered = np.clip(borders + rng.integers(-1, 2, len(borders)), 1, height - 1)
        semantic[t] = np.asarray(stuff)[np.searchsorted(jittered, np.arange(height), side="right")][:, None]
        for category, track_id, h, w, y, x, velocity, alive in tracks:
            if alive[t]:
                yy, xx = (int(np.clip(c + v * t, 0, s - 1)) for c, v, s in zip((y, x), velocity, (height, width)))
                semantic[t, yy:yy + h, xx:xx + w] = category
                instance[t, yy:yy + h, xx:xx + w] = track_id
        if rng.random() < 0.7:
            y, x = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
            semantic[t, y:y + int(rng.integers(2, 8)), x:x + int(rng.integers(2, 12))] = 255
    instance[semantic == 255] = 0
    return semantic, instance


def disturb(rng: np.random.Generator, semantic: np.ndarray, instance: np.ndarray, stuff: Sequence[int],
            things: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """A prediction made from ground-truth (semantic, instance) maps."""
    semantic, instance = semantic.copy(), instance.copy()
    frames, height, width = semantic.shape
    for t in range(frames):
        shift = tuple(int(s) for s in rng.integers(-2, 3, 2))
        if rng.random() < 0.6:
            semantic[t], instance[t] = np.roll(semantic[t], shift, (0, 1)), np.roll(instance[t], shift, (0, 1))
        present = np.unique(instance[t][instance[t] > 0])
        if len(present) and rng.random() < 0.3:  # identity switch
            instance[t][instance[t] == rng.choice(present)] = 50 + t
        present = np.unique(instance[t][instance[t] > 0])
        if len(present) and rng.random() < 0.3:  # wrong class
            semantic[t][instance[t] == rng.choice(present)] = rng.choice(things)
        if rng.random() < 0.3:  # spurious object
            y, x = int(rng.integers(0, height - 5)), int(rng.integers(0, width - 5))
            semantic[t, y:y + 5, x:x + 7] = rng.choice(things)
            instance[t, y:y + 5, x:x + 7] = 90
        if rng.random() < 0.3:  # stuff confusion
            y = int(rng.integers(0, height - 3))
            band = semantic[t, y:y + 3]
            band[~np.isin(band, things)] = rng.choice(stuff)
        if rng.random() < 0.4:  # predicted void
            y, x = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
            semantic[t, y:y + 3, x:x + 6] = 255
    instance[~np.isin(semantic, things)] = 0
    return semantic, instance


def ground_truth_segments(rng: np.random.Generator, segments: list[list[Segment]], cats: dict[int, Category],
                          crowd_fraction: float = 0.25) -> list[list[Segment]]:
    """Mark some thing segments crowd, leave some single-frame segments out of their frame's JSON (pixels that no
    segment claims) and shuffle the listing order."""
    crowd = {s.id for f in segments for s in f if cats[s.category_id].isthing and rng.random() < crowd_fraction}
    frames_of = Counter(s.id for f in segments for s in f)
    out = []
    for frame in segments:
        frame = [Segment(s.id, s.category_id, s.id in crowd, s.area) for s in frame]
        single = [i for i, s in enumerate(frame) if frames_of[s.id] == 1]
        if single and rng.random() < 0.3:
            frame.pop(single[int(rng.integers(len(single)))])
        rng.shuffle(frame)
        out.append(frame)
    return out


CITYSCAPES_VPS_THINGS = set(range(11, 19))


def write_cityscapes_vps_set(root: Path, seed: int, videos: int = 3, height: int = 30, width: int = 44) -> None:
    """`root/gt` and `root/pred` in the Cityscapes-VPS layouts: `videos` videos of 6 frames, 19 classes."""
    rng = np.random.default_rng(seed)
    cats = categories(19, CITYSCAPES_VPS_THINGS)
    stuff, things = [c for c in cats if c not in CITYSCAPES_VPS_THINGS], sorted(CITYSCAPES_VPS_THINGS)[:4]
    writer = panoptic.CityscapesVpsPredictionWriter(Path(root) / "pred")
    gt_frames = []
    for v in range(videos):
        video_stuff = list(rng.choice(stuff, 4, replace=False))
        semantic, instance = scene(rng, panoptic.CITYSCAPES_VPS_FRAMES_PER_VIDEO, height, width, video_stuff, things, 5)
        ids, segments = panoptic.encode_panoptic_video(semantic, instance, cats, seed=seed + v)
        segments = ground_truth_segments(rng, segments, cats)
        pred_ids, pred_segments = panoptic.encode_panoptic_video(
            *disturb(rng, semantic, instance, video_stuff, things), cats, seed=seed + 100 + v)
        for t in range(panoptic.CITYSCAPES_VPS_FRAMES_PER_VIDEO):
            name = f"{v + 1:04d}_{t + 1:04d}_city_{v:06d}_{t:06d}"
            gt_frames.append((name, ids[t], segments[t]))
            writer.add_frame(name, pred_ids[t], pred_segments[t])
    panoptic.write_cityscapes_vps_gt(Path(root) / "gt", cats, gt_frames)
    writer.close()


VIPSEG_THINGS = {2, 4, 5, 8, 9}


def write_vipseg_set(root: Path, seed: int, videos: int = 4, height: int = 28, width: int = 40,
                     max_frames: int = 10) -> None:
    """`root/gt` and `root/pred` in the VIPSeg layouts: 12 classes, videos of 1..max_frames frames."""
    rng = np.random.default_rng(seed)
    cats = categories(12, VIPSEG_THINGS)
    things, stuff = sorted(VIPSEG_THINGS), [c for c in cats if c not in VIPSEG_THINGS]
    writer = panoptic.VipsegPredictionWriter(Path(root) / "pred")
    gt_videos = {}
    for v in range(videos):
        frames = int(rng.integers(1, max_frames + 1))
        video_stuff = list(rng.choice(stuff, 3, replace=False))
        semantic, instance = scene(rng, frames, height, width, video_stuff, things, 4)
        ids, segments = panoptic.encode_panoptic_video(semantic, instance, cats, seed=seed + v)
        segments = ground_truth_segments(rng, segments, cats)
        pred_ids, pred_segments = panoptic.encode_panoptic_video(
            *disturb(rng, semantic, instance, video_stuff, things), cats, seed=seed + 100 + v)
        names = [f"{t:05d}.png" for t in range(frames)]
        gt_videos[f"video_{seed}_{v}"] = list(zip(names, ids, segments))
        writer.add_video(f"video_{seed}_{v}", names, pred_ids, pred_segments)
    panoptic.write_vipseg_gt(Path(root) / "gt", cats, gt_videos)
    writer.close()


def write_kitti_step_set(root: Path, seed: int, sequences: int = 3, height: int = 30, width: int = 44) -> None:
    """`root/gt/<seq>/<frame>.png` and `root/pred/...` in the KITTI-STEP format, with crowd regions."""
    rng = np.random.default_rng(seed)
    things = list(kitti_step.THING_CLASSES)
    stuff = [c for c in range(kitti_step.NUM_CLASSES) if c not in things]
    for s in range(sequences):
        frames = int(rng.integers(2, 6))
        sequence_stuff = list(rng.choice(stuff, 4, replace=False))
        semantic, instance = scene(rng, frames, height, width, sequence_stuff, things, 5)
        instance[np.isin(semantic, things) & (instance == int(rng.integers(1, 6)))] = 0  # a crowd region
        pred_semantic, pred_instance = disturb(rng, semantic, instance, sequence_stuff, things)
        for side, (sem, inst) in (("gt", (semantic, instance)), ("pred", (pred_semantic, pred_instance))):
            folder = Path(root) / side / f"{s:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t in range(frames):
                kitti_step.write_kitti_step_png(folder / f"{t:06d}.png", sem[t], inst[t])


BURST_CATEGORIES = (4, 1, 13, 2, 34)  # LVIS ids: 4, 13, 34 are "common", 1, 2 "uncommon"


def write_burst_set(root: Path, seed: int, sequences: int = 4, height: int = 24, width: int = 32) -> None:
    """`root/gt/all_classes.json`, `root/gt/first_frame_annotations.json` and `root/results.json` (BURST format):
    10-frame videos annotated every second frame, 1-3 moving rectangles per video."""
    rng = np.random.default_rng(seed)
    gt_sequences, first_frame_sequences, predictions = [], [], {}
    for s in range(sequences):
        all_paths = [f"frame{t:04d}.jpg" for t in range(10)]
        annotated = all_paths[::2]
        tracks = {}
        for k in range(1, int(rng.integers(1, 4)) + 1):
            h, w = int(rng.integers(4, 12)), int(rng.integers(4, 12))
            tracks[k] = (int(rng.choice(BURST_CATEGORIES)), h, w, int(rng.integers(0, height - h)),
                         int(rng.integers(0, width - w)), rng.integers(-1, 2, 2), int(rng.integers(0, 2)))
        frames, first_frames, predicted, seen = [], [], {}, set()
        for i, image_path in enumerate(annotated):
            frame, first_frame, predicted_frame = {}, {}, {}
            for k, (_, h, w, y, x, velocity, start) in tracks.items():
                if i < start or rng.random() < 0.1:
                    continue
                mask = np.zeros((height, width), bool)
                yy, xx = (int(np.clip(c + v * i, 0, size - 1)) for c, v, size in zip((y, x), velocity, (height, width)))
                mask[yy:yy + h, xx:xx + w] = True
                rle = encode_rle(mask)["counts"]
                frame[str(k)] = {"rle": rle, "is_gt": True}
                if k not in seen:
                    seen.add(k)
                    first_frame[str(k)] = {"rle": rle, "is_gt": True, "point": {"x": xx + 1, "y": yy + 1},
                                           "bbox": [xx, yy, w, h]}
                if rng.random() < 0.85:
                    guess = np.roll(mask, tuple(int(d) for d in rng.integers(-2, 3, 2)), (0, 1))
                    if rng.random() < 0.2:
                        guess[:] = False
                        guess[:5, :6] = True
                    predicted_frame[k] = guess
            frames.append(frame)
            first_frames.append(first_frame)
            predicted[image_path] = predicted_frame
        sequence = {"id": s + 1, "dataset": "YFCC100M" if s % 2 else "LaSOT", "seq_name": f"v_{seed}_{s}",
                    "width": width, "height": height, "fps": 30, "all_image_paths": all_paths,
                    "annotated_image_paths": annotated, "neg_category_ids": [], "not_exhaustive_category_ids": [],
                    "track_category_ids": {str(k): track[0] for k, track in tracks.items()}}
        gt_sequences.append(sequence | {"segmentations": frames})
        first_frame_sequences.append(sequence | {"segmentations": first_frames})
        predictions[f"{sequence['dataset']}/{sequence['seq_name']}"] = predicted
    write_burst_gt(Path(root) / "gt", gt_sequences, first_frame_sequences)
    first_frame = burst.read_burst_annotations(Path(root) / "gt" / "first_frame_annotations.json")[0]
    burst.write_burst_results(Path(root) / "results.json", first_frame, predictions)


def write_burst_gt(gt_dir: Path, sequences: list[dict], first_frame_sequences: list[dict]) -> None:
    """`all_classes.json` and `first_frame_annotations.json` of the split "val" (categories come from trackeval)."""
    burst.write_burst_annotations(Path(gt_dir) / "all_classes.json", "val", sequences)
    burst.write_burst_annotations(Path(gt_dir) / "first_frame_annotations.json", "val", first_frame_sequences)


# road (stuff), car and person (things); the colours fix the segment ids and so the JSON listing order
DAVIS_AS_PANOPTIC_CATEGORIES = {0: Category(0, "road", False, (128, 64, 128)), 1: Category(1, "car", True, (0, 0, 142)),
                                2: Category(2, "person", True, (220, 20, 60))}


def write_davis_as_vipseg(davis_root: Path, out: Path, prediction: str, frames: Sequence[int],
                          sequence: str = "horsejump-high") -> None:
    """Real DAVIS masks as one VIPSeg video: `osvos` masks as ground truth, `prediction` ("rvos" or "osvos") masks
    as prediction; background is road (stuff), object k a car (thing) with instance k."""
    def video(method: str) -> tuple[np.ndarray, np.ndarray]:
        labels = np.stack([np.asarray(Image.open(Path(davis_root) / method / sequence / f"{t:05d}.png"))
                           for t in frames]).astype(np.int64)
        return np.where(labels > 0, 1, 0), labels

    cats = DAVIS_AS_PANOPTIC_CATEGORIES
    names = [f"{t:05d}.png" for t in frames]
    gt_ids, gt_segments = panoptic.encode_panoptic_video(*video("osvos"), cats, seed=1)
    panoptic.write_vipseg_gt(Path(out) / "gt", cats, {sequence: list(zip(names, gt_ids, gt_segments))})
    writer = panoptic.VipsegPredictionWriter(Path(out) / "pred")
    writer.add_video(sequence, names, *panoptic.encode_panoptic_video(*video(prediction), cats, seed=2))
    writer.close()
