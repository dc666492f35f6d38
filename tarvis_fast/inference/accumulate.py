"""VIS and VPS stitching: clip predictions in, per-video results out (SPEC §6.1, §6.2). VOS/PET is in
`propagation.py`, which follows the same protocol.

Every accumulator serves one video::

    acc = VisAccumulator(num_frames, geometry, ...)         # or VpsAccumulator / propagation.VosAccumulator
    for clip in clip_schedule(num_frames, clip_length, overlap, first_frame):
        ...                                                 # run the network on the clip
        write(acc.add_clip(clip, prediction))               # list: results this clip made final (maybe none)
    write(acc.finish())                                     # iterator over the rest; call once, at the end

Results come out in frame order, and when they can be final:
- VIS (`VisTrack`): the per-video top-K (track, class) pairs need every clip: everything comes from `finish()`.
- VPS (`PanopticFrame`): a track's class is its class logits averaged over the whole video, so painted frames
  come from `finish()`, lazily, one at a time.

What is held between clips stays bounded: the latest clip's logits at 1/4 resolution (on their device), each
track's masks as RLE per frame, and for VPS each frame's stuff map compressed with zlib. Full-resolution logits
exist only one frame and a chunk of channels at a time (see `clips.py`).

Where the original behaves oddly (SPEC §12 quirks 8-10, §6) it is reproduced by default and marked "quirk".
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tarvis_fast.formats.rle import RLE, decode_rle, encode_rle
from tarvis_fast.inference.clips import (
    DEFAULT_MAX_ELEMENTS,
    SUPPRESSED_LOGIT,
    Clip,
    FrameGeometry,
    HeldClip,
    argmax_at_original,
    check_clip,
    check_follows,
    check_logits_size,
    check_num_frames,
    masks_at_original,
)
from tarvis_fast.model.outputs import InstancePrediction

TRACK_MATCH_IOU = 0.5        # overlap-frame IoU a track must exceed to continue across clips (SPEC §6.1)


# ============================================================================================== result types

@dataclass(frozen=True)
class VisTrack:
    """One entry of a YouTube-VIS / OVIS results file, less the video id."""

    score: float
    category_id: int                    # 1-based, as the results file wants
    segmentations: list[RLE | None]     # one per video frame: JSON-ready RLE, None where the track has no mask


@dataclass(frozen=True)
class PanopticFrame:
    """One frame of a VPS result, what the KITTI-STEP / Cityscapes-VPS / VIPSeg writers consume."""

    frame_index: int
    semantic: np.ndarray                # (H, W) int32: 0-based class id of every pixel (a track's class where painted)
    instance: np.ndarray                # (H, W) int32: track id, 0 where no track was painted
    segments: dict[int, int]            # track id -> 0-based class id, for the track ids present in `instance`


# ============================================================================================== pure helpers

def select_clip_tracks(class_logits: Tensor, max_tracks: int, score_threshold: float) -> Tensor:
    """Which instance queries of a clip become tracks (SPEC §6.1).

    class_logits: (Q, 1 + C), background first. A query's score is its best non-background softmax probability;
    queries scoring below `score_threshold` are dropped (no filtering when it is 0, as YouTube-VIS/OVIS run), then
    the `max_tracks` best are kept. Returns (K,) int64 query indices: by descending score when the cap applied,
    else in query order.
    """
    scores = class_logits.float().softmax(-1)[:, 1:].max(-1).values
    if score_threshold > 0:
        keep = torch.nonzero(scores >= score_threshold).flatten()
    else:
        keep = torch.arange(scores.numel(), device=scores.device)
    if keep.numel() > max_tracks:
        keep = keep[scores[keep].topk(max_tracks).indices]
    return keep


def match_tracks(previous: Tensor, current: Tensor, iou_threshold: float = TRACK_MATCH_IOU,
                 ) -> tuple[list[int], list[int]]:
    """Hungarian matching of two clips' tracks on their shared frames (SPEC §6.1).

    previous: (N, To, h, w) bool, current: (M, To, h, w) bool: binarised 1/4-resolution masks on the overlap
    frames. IoU over all those frames jointly is `(inter + 1) / (union + 1)` in float32, as the original computes
    it; the assignment maximises total IoU and a pair is accepted only when its IoU is strictly above
    `iou_threshold`. Returns (previous indices, current indices) of the accepted pairs.
    """
    if previous.shape[1:] != current.shape[1:]:
        raise ValueError(f"masks to match disagree in shape: {tuple(previous.shape)} vs {tuple(current.shape)}")
    p = previous.flatten(1).float()
    c = current.flatten(1).float()
    inter = p @ c.T  # exact: 0/1 products, sums far below 2**24
    union = p.sum(1)[:, None] + c.sum(1)[None, :] - inter
    iou = ((inter + 1) / (union + 1)).cpu().numpy()
    rows, cols = linear_sum_assignment(iou, maximize=True)
    accepted = iou[rows, cols] > iou_threshold
    return rows[accepted].tolist(), cols[accepted].tolist()


def top_track_classes(mean_class_logits: Tensor, k: int) -> list[tuple[int, int, float]]:
    """The video's k best (track, class) pairs (SPEC §6.1, quirk 9: YouTube-VIS uses the OVIS formatter).

    mean_class_logits: (N, 1 + C), each track's class logits averaged over its clips. Scores are the softmax over
    1 + C; every (track, non-background class) pair competes, so a track may be chosen with several classes.
    Returns (track row, 1-based class, score), best first; fewer than k when there are fewer pairs.
    """
    probs = mean_class_logits.float().softmax(-1)[:, 1:]
    num_classes = probs.shape[1]
    scores, flat = probs.flatten().topk(min(k, probs.numel()))
    return [(i // num_classes, i % num_classes + 1, s) for i, s in zip(flat.tolist(), scores.tolist())]


def exclusive_by_score(masks: np.ndarray, scores: Sequence[float]) -> np.ndarray:
    """(n, H, W) bool masks made disjoint: a pixel stays only with the highest-scoring mask covering it (equal
    scores: the earlier mask). Returns a new (n, H, W) bool array."""
    out = np.zeros_like(masks, dtype=bool)
    taken = np.zeros(masks.shape[1:], bool)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        out[i] = masks[i] & ~taken
        taken |= masks[i]
    return out


def select_panoptic_tracks(mean_class_logits: Mapping[int, Tensor], thing_classes: set[int], score_threshold: float,
                           max_tracks: int) -> dict[int, tuple[int, float]]:
    """Which VPS tracks are painted, with what class (SPEC §6.2).

    mean_class_logits: track id -> (1 + C,) averaged class logits. A track's class is the argmax of the softmax
    over all 1 + C; tracks whose class is background or a stuff class are dropped, then those with score <=
    `score_threshold`, then all but the `max_tracks` best. Returns track id -> (0-based class, score).
    """
    kept = []
    for track_id, logits in mean_class_logits.items():
        score, label = logits.float().softmax(-1).max(-1)
        if label.item() > 0 and label.item() - 1 in thing_classes and score.item() > score_threshold:
            kept.append((track_id, label.item() - 1, score.item()))
    if len(kept) > max_tracks:
        kept = sorted(kept, key=lambda k: -k[2])[:max_tracks]
    return {track_id: (label, score) for track_id, label, score in kept}


def _unbatched_instances(prediction: InstancePrediction, geometry: FrameGeometry) -> tuple[Tensor, Tensor, Tensor]:
    """-> mask logits (Q, T, h, w), class logits (Q, 1 + C), semantic logits (C', T, h, w) of batch element 0."""
    masks, classes, semantic = prediction.mask_logits, prediction.class_logits, prediction.semantic_logits
    if masks.ndim != 5 or masks.shape[0] != 1:
        raise ValueError(f"mask_logits must be (1, Q, T, h, w) (inference runs one video), got {tuple(masks.shape)}")
    if classes.ndim != 3 or classes.shape[:2] != masks.shape[:2]:
        raise ValueError(f"class_logits must be (1, Q={masks.shape[1]}, 1 + C), got {tuple(classes.shape)}")
    if semantic.ndim != 5 or semantic.shape[0] != 1 or semantic.shape[2:] != masks.shape[2:]:
        raise ValueError(f"semantic_logits must be (1, C, {', '.join(map(str, masks.shape[2:]))}), "
                         f"got {tuple(semantic.shape)}")
    check_logits_size("mask_logits", masks.shape, geometry)
    return masks[0], classes[0], semantic[0]


# ============================================================================================== VIS / VPS tracks

class _TrackLinker:
    """Instance tracks of VIS and VPS: per-clip selection, linking across clips, masks kept as RLE per frame.

    The earlier clip decides the overlap frames (quirk 8): a clip's frames become final when the next clip has been
    linked to it, minus the frames that clip's predecessor already decided.
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, max_tracks_per_clip: int, score_threshold: float,
                 iou_threshold: float, average_overlap_logits: bool, max_elements: int):
        check_num_frames(num_frames)
        if max_tracks_per_clip < 1:
            raise ValueError(f"max_tracks_per_clip must be >= 1, got {max_tracks_per_clip}")
        self.num_frames, self.geometry = num_frames, geometry
        self.max_tracks_per_clip, self.score_threshold = max_tracks_per_clip, score_threshold
        self.iou_threshold, self.average_overlap_logits = iou_threshold, average_overlap_logits
        self.max_elements = max_elements
        self.masks: list[dict[int, RLE]] = [{} for _ in range(num_frames)]  # frame -> track id -> mask
        self._class_logits: dict[int, list[Tensor]] = {}                     # track id -> (1 + C,) per clip
        self._held: HeldClip | None = None
        self._next_id = 1

    def add_clip(self, clip: Clip, mask_logits: Tensor, class_logits: Tensor) -> None:
        """mask_logits: (Q, T, h, w); class_logits: (Q, 1 + C)."""
        check_follows(clip, self._held.frames.stop if self._held else None)
        keep = select_clip_tracks(class_logits, self.max_tracks_per_clip, self.score_threshold)
        mask_logits = mask_logits[keep].float()
        class_logits = class_logits[keep].float().cpu()
        overlap = clip.num_overlap

        track_ids = [0] * len(keep)
        if overlap:
            held_overlap = self._held.logits[:, -overlap:]
            rows, cols = match_tracks(held_overlap > 0, mask_logits[:, :overlap] > 0, self.iou_threshold)
            if self.average_overlap_logits and rows:
                # The original means to do this but writes into an advanced-indexing copy (quirk 8), so by
                # default the earlier clip's logits decide the overlap frames alone.
                held_overlap[rows] = (held_overlap[rows] + mask_logits[cols, :overlap]) / 2
            for row, col in zip(rows, cols):
                track_ids[col] = self._held.ids[row]
        for col, track_id in enumerate(track_ids):
            if track_id == 0:
                track_ids[col] = self._next_id
                self._next_id += 1

        self._finalise_held()
        for track_id, logits in zip(track_ids, class_logits):
            self._class_logits.setdefault(track_id, []).append(logits)
        # Held compactly: only the frames that are not final yet.
        self._held = HeldClip(mask_logits[:, overlap:].clone(), clip.frames[overlap:], track_ids)

    def finish(self) -> dict[int, Tensor]:
        """Finalise the last clip; returns track id -> (1 + C,) class logits averaged over the track's clips."""
        self._finalise_held()
        self._held = None
        return {track_id: torch.stack(logits).mean(0) for track_id, logits in self._class_logits.items()}

    def _finalise_held(self) -> None:
        if self._held is None:
            return
        held = self._held
        for t, rows, masks in masks_at_original(held.logits, self.geometry, self.max_elements):
            frame_masks = self.masks[held.frames[t]]
            for track_id, mask in zip(held.ids[rows], masks.cpu().numpy()):
                frame_masks[track_id] = encode_rle(mask)


class VisAccumulator:
    """Video instance segmentation (YouTube-VIS 2021, OVIS; SPEC §6.1).

    Per clip the `max_tracks_per_clip` best queries become tracks (score = best non-background probability;
    `score_threshold` 0 disables the threshold). Tracks of consecutive clips are linked by Hungarian matching on
    the overlap frames (`match_tracks`); the earlier clip's masks stand on the overlap frames (quirk 8;
    `average_overlap_logits=True` averages the linked logits there instead, as the original intended). At the end
    each track's class logits are averaged, the `tracks_per_video` best (track, class) pairs are kept (a track may
    appear once per class), and within a frame the masks of chosen pairs sharing a class are made disjoint by score.

    Settings: YouTube-VIS 10 tracks/clip, threshold 0, 10/video; OVIS the same with 20/video.
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, *, tracks_per_video: int,
                 max_tracks_per_clip: int = 10, score_threshold: float = 0.0, iou_threshold: float = TRACK_MATCH_IOU,
                 average_overlap_logits: bool = False, max_elements: int = DEFAULT_MAX_ELEMENTS):
        if tracks_per_video < 1:
            raise ValueError(f"tracks_per_video must be >= 1, got {tracks_per_video}")
        self.num_frames, self.geometry, self.tracks_per_video = num_frames, geometry, tracks_per_video
        self._tracks = _TrackLinker(num_frames, geometry, max_tracks_per_clip, score_threshold, iou_threshold,
                                    average_overlap_logits, max_elements)
        self._finished = False

    def add_clip(self, clip: Clip, prediction: InstancePrediction) -> list[VisTrack]:
        """Add one clip's prediction (mask logits (1, Q, T, h, w), class logits (1, Q, 1 + C)). Returns [] (VIS
        results are final only once the whole video is seen)."""
        masks, classes, _ = _unbatched_instances(prediction, self.geometry)
        check_clip(clip, self.num_frames, masks.shape[1], "mask_logits")
        self._tracks.add_clip(clip, masks, classes)
        return []

    def finish(self) -> Iterator[VisTrack]:
        """The video's results, best score first."""
        if self._finished:
            raise RuntimeError("finish() was already called for this video")
        self._finished = True
        mean_logits = self._tracks.finish()
        if not mean_logits:
            return iter(())
        track_ids = list(mean_logits)
        picks = [(track_ids[row], category, score) for row, category, score in
                 top_track_classes(torch.stack([mean_logits[t] for t in track_ids]), self.tracks_per_video)]

        segmentations: list[list[RLE | None]] = [[None] * self.num_frames for _ in picks]
        for frame, frame_masks in enumerate(self._tracks.masks):
            by_class: dict[int, list[int]] = {}
            for pick, (track_id, category, _) in enumerate(picks):
                if track_id in frame_masks:
                    segmentations[pick][frame] = frame_masks[track_id]
                    by_class.setdefault(category, []).append(pick)
            for same_class in by_class.values():
                if len(same_class) > 1:  # masks of one class may not overlap (OVIS rule, applied to both)
                    masks = np.stack([decode_rle(segmentations[p][frame]) for p in same_class])
                    disjoint = exclusive_by_score(masks, [picks[p][2] for p in same_class])
                    for p, mask in zip(same_class, disjoint):
                        segmentations[p][frame] = encode_rle(mask)
        return iter([VisTrack(score=score, category_id=category, segmentations=segs)
                     for (_, category, score), segs in zip(picks, segmentations)])


# ============================================================================================== VPS

@dataclass(frozen=True)
class _PackedMap:
    """A class-id map compressed losslessly: VPS keeps one per frame until the video's end."""

    shape: tuple[int, int]
    dtype: np.dtype
    data: bytes

    @classmethod
    def pack(cls, array: np.ndarray) -> _PackedMap:
        return cls(array.shape, array.dtype, zlib.compress(np.ascontiguousarray(array).tobytes(), 1))

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), self.dtype).reshape(self.shape)


class _SemanticStitcher:
    """The stuff map of VPS: semantic logits averaged on overlap frames (this averaging works, unlike the
    instance one; quirk 8), thing classes suppressed (quirk 10), argmax at the video's resolution."""

    def __init__(self, num_frames: int, geometry: FrameGeometry, thing_classes: Sequence[int], max_elements: int):
        self.geometry, self.max_elements = geometry, max_elements
        self.thing_classes = sorted(thing_classes)
        self.maps: list[_PackedMap | None] = [None] * num_frames
        self._held: HeldClip | None = None

    def add_clip(self, clip: Clip, logits: Tensor) -> None:
        """logits: (C, T, h, w), semantic queries only."""
        if self.thing_classes and self.thing_classes[-1] >= logits.shape[0]:
            raise ValueError(f"thing class {self.thing_classes[-1]} does not exist among the "
                             f"{logits.shape[0]} semantic classes of this prediction")
        check_follows(clip, self._held.frames.stop if self._held else None)
        logits = logits.float()
        overlap = clip.num_overlap
        if overlap:
            held = self._held.logits
            held[:, -overlap:] = (held[:, -overlap:] + logits[:, :overlap]) / 2
        self._finalise_held()
        self._held = HeldClip(logits[:, overlap:].clone(), clip.frames[overlap:], [])

    def finish(self) -> None:
        self._finalise_held()
        self._held = None

    def _finalise_held(self) -> None:
        if self._held is None:
            return
        logits = self._held.logits  # (C, T', h, w)
        logits[self.thing_classes] = SUPPRESSED_LOGIT  # stuff only: things come from the tracks
        dtype = np.uint8 if logits.shape[0] <= 256 else np.int32
        for t, _, classes in argmax_at_original(logits, self.geometry, self.max_elements):
            self.maps[self._held.frames[t]] = _PackedMap.pack(classes.cpu().numpy().astype(dtype))


class VpsAccumulator:
    """Video panoptic segmentation (KITTI-STEP, Cityscapes-VPS, VIPSeg; SPEC §6.2).

    Instance tracks as `VisAccumulator` (clip tracks kept when their score is >= `score_threshold`, at most
    `max_tracks_per_clip`). Stuff: the semantic logits with thing classes suppressed, argmax per pixel. At the end
    each track takes the argmax class of its averaged class logits; background and stuff tracks are dropped, as
    are tracks scoring <= `score_threshold`; the rest (at most `max_tracks_per_video`) are painted over the stuff
    map in ascending score order, so higher scores end on top (quirk 10).

    thing_classes: 0-based semantic class ids of the thing classes (KITTI-STEP [11, 13], Cityscapes-VPS 11..18).
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, *, thing_classes: Sequence[int],
                 max_tracks_per_clip: int = 1000, score_threshold: float = 0.5, max_tracks_per_video: int = 1000,
                 iou_threshold: float = TRACK_MATCH_IOU, average_overlap_logits: bool = False,
                 max_elements: int = DEFAULT_MAX_ELEMENTS):
        if not thing_classes or min(thing_classes) < 0:
            raise ValueError(f"thing_classes must be non-empty 0-based class ids, got {list(thing_classes)}")
        self.num_frames, self.geometry = num_frames, geometry
        self.thing_classes = set(thing_classes)
        self.score_threshold, self.max_tracks_per_video = score_threshold, max_tracks_per_video
        self._tracks = _TrackLinker(num_frames, geometry, max_tracks_per_clip, score_threshold, iou_threshold,
                                    average_overlap_logits, max_elements)
        self._semantic = _SemanticStitcher(num_frames, geometry, thing_classes, max_elements)
        self._finished = False

    def add_clip(self, clip: Clip, prediction: InstancePrediction) -> list[PanopticFrame]:
        """Add one clip's prediction (semantic logits (1, C, T, h, w): semantic queries only). Returns []."""
        masks, classes, semantic = _unbatched_instances(prediction, self.geometry)
        check_clip(clip, self.num_frames, masks.shape[1], "mask_logits")
        if classes.shape[1] != semantic.shape[0] + 1:
            raise ValueError(f"class_logits have {classes.shape[1]} entries but semantic_logits {semantic.shape[0]} "
                             "classes: VPS wants 1 + C class logits and C semantic maps")
        self._tracks.add_clip(clip, masks, classes)
        self._semantic.add_clip(clip, semantic)
        return []

    def finish(self) -> Iterator[PanopticFrame]:
        """The video's painted frames, lazily, in order."""
        if self._finished:
            raise RuntimeError("finish() was already called for this video")
        self._finished = True
        mean_logits = self._tracks.finish()
        self._semantic.finish()
        missing = [t for t, packed in enumerate(self._semantic.maps) if packed is None]
        if missing:
            raise RuntimeError(f"frames {missing[0]}..{missing[-1]} were in no clip: VPS clips must cover the video")
        painted = select_panoptic_tracks(mean_logits, self.thing_classes, self.score_threshold,
                                         self.max_tracks_per_video)
        return self._paint(painted)

    def _paint(self, painted: dict[int, tuple[int, float]]) -> Iterator[PanopticFrame]:
        for frame, (packed, frame_masks) in enumerate(zip(self._semantic.maps, self._tracks.masks)):
            semantic = packed.unpack().astype(np.int32)
            instance = np.zeros_like(semantic)
            tracks = sorted((t for t in frame_masks if t in painted), key=lambda t: painted[t][1])
            for track_id in tracks:
                mask = decode_rle(frame_masks[track_id])
                instance[mask] = track_id
                semantic[mask] = painted[track_id][0]
            present = np.unique(instance)
            segments = {int(t): painted[int(t)][0] for t in present[present > 0]}
            yield PanopticFrame(frame_index=frame, semantic=semantic, instance=instance, segments=segments)


