"""Per-task stitching of clip predictions into per-video results (SPEC §6).

Every accumulator serves one video and follows the same protocol::

    acc = VosAccumulator(num_frames, geometry)              # or VisAccumulator / VpsAccumulator
    for clip in clip_schedule(num_frames, clip_length, overlap, first_frame):
        ...                                                 # run the network on the clip
        write(acc.add_clip(clip, prediction))               # list: results this clip made final (maybe none)
    write(acc.finish())                                     # iterator over the rest; call once, at the end

Results come out in frame order, and when they can be final:
- VOS/PET (`VosFrame`): a frame is final once no later clip can change it, so frames stream out clip by clip.
- VIS (`VisTrack`): the per-video top-K (track, class) pairs need every clip: everything comes from `finish()`.
- VPS (`PanopticFrame`): a track's class is its class logits averaged over the whole video, so painted frames
  come from `finish()`, lazily, one at a time.

What is held between clips stays bounded: the latest clip's logits at 1/4 resolution (on their device); for
VIS/VPS each track's masks as RLE per frame, and for VPS each frame's stuff map compressed with zlib.
Full-resolution logits exist only one frame and a chunk of channels at a time (see `clips.py`).

Where the original behaves oddly (SPEC §12 quirks 7-10, §6) it is reproduced by default and marked "quirk".
"""
from __future__ import annotations

import numbers
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tarvis_fast.formats.rle import RLE, decode_rle, encode_rle
from tarvis_fast.inference.clips import (
    DEFAULT_MAX_ELEMENTS,
    Clip,
    FrameGeometry,
    argmax_at_original,
    masks_at_original,
)
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction

TRACK_MATCH_IOU = 0.5        # overlap-frame IoU a track must exceed to continue across clips (SPEC §6.1)
SUPPRESSED_LOGIT = -1e3      # the original's "minus infinity" (a true -inf misbehaves in float16)


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


@dataclass(frozen=True)
class VosFrame:
    """One frame of a VOS/PET result: per-object masks at the video's resolution.

    `masks` keeps the original's write order. Masks of one clip never overlap, but an overlap frame can mix two
    clips' masks (see `VosAccumulator`), which may then overlap: `id_map()` paints in order, later entries on top,
    as the original's DAVIS writer does; the BURST writer encodes each mask as it is.
    """

    frame_index: int
    size: tuple[int, int]               # (H, W)
    masks: dict[int, np.ndarray]        # object id -> (H, W) bool

    def id_map(self) -> np.ndarray:
        """(H, W) int32 object id per pixel, 0 for background."""
        ids = np.zeros(self.size, np.int32)
        for object_id, mask in self.masks.items():
            ids[mask] = object_id
        return ids


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


def suppress_before_reference(logits: Tensor, object_ids: Sequence[int], reference_frames: Mapping[int, int],
                              clip_start: int) -> Tensor:
    """Objects first given inside a clip have no mask before that frame (SPEC §6.3).

    logits: (N, T, h, w), rows in `object_ids` order; reference_frames: object id -> video frame of its reference
    in this clip. Returns a copy with the frames before each reference set to -1e3, in every row of that id (as
    the original, whose reference frames are per id).
    """
    out = logits.clone()
    for row, object_id in enumerate(object_ids):
        if object_id in reference_frames:
            out[row, : reference_frames[object_id] - clip_start] = SUPPRESSED_LOGIT
    return out


@dataclass(frozen=True)
class Propagation:
    """Objects carried from one clip into the next through their overlap frames (SPEC §6.3, quirk 7).

    The runner builds the next clip's object references from it: each surviving object becomes a *mask* object
    (PET point objects too) with these masks on the overlap frames, ground-truth masks replacing them on their
    own frames. The next clip's object order must be: `object_ids` as here, then objects new in that clip.
    """

    frames: range              # the overlap frames: the next clip's first frames
    object_ids: list[int]      # surviving objects, distinct, in the order of their first surviving row
    masks: Tensor              # (len(object_ids), len(frames), Hp, Wp) bool at the padded input size
    lost_ids: list[int]        # empty in every overlap frame and given no new reference: never tracked again


def propagate_objects(overlap_logits: Tensor, object_ids: Sequence[int], reference_ids: Sequence[int] | set[int],
                      geometry: FrameGeometry, frames: range, max_elements: int = DEFAULT_MAX_ELEMENTS,
                      ) -> Propagation:
    """Previous-clip logits on the overlap frames -> reference masks for the next clip (SPEC §6.3).

    overlap_logits: (N, To, Hp/4, Wp/4), rows in `object_ids` order. Masks are the x4 bilinear upsample
    thresholded at 0, at the padded input size (no crop, no resize: they go back into the network), row by row
    (no argmax across rows). A row whose masks are empty on every overlap frame is dropped; an object with no row
    left is lost unless `reference_ids` gives it anew.

    Rows may share an id (a PET object given again by its point, see `VosAccumulator`). As the original fills
    its per-object dict row by row, the object then carries the masks of its *last* surviving row, and takes its
    place in `object_ids` at its *first* surviving row.
    """
    num_rows, num_frames = overlap_logits.shape[:2]
    if num_rows != len(object_ids) or num_frames != len(frames):
        raise ValueError(f"overlap_logits {tuple(overlap_logits.shape)} do not match {len(object_ids)} objects "
                         f"and {len(frames)} overlap frames")
    per_chunk = max(1, geometry.channels_per_chunk(max_elements) // max(num_frames, 1))
    masks = torch.zeros(num_rows, num_frames, *geometry.padded, dtype=torch.bool, device=overlap_logits.device)
    for i in range(0, num_rows, per_chunk):
        masks[i:i + per_chunk] = geometry.logits_to_padded(overlap_logits[i:i + per_chunk]) > 0
    alive = masks.flatten(1).any(1).tolist()
    carried_row: dict[int, int] = {}  # object id -> row whose masks it carries; insertion order = object order
    for row, (object_id, row_alive) in enumerate(zip(object_ids, alive)):
        if row_alive:
            carried_row[object_id] = row
    new_references = set(reference_ids)
    return Propagation(
        frames=frames,
        object_ids=list(carried_row),
        masks=masks[list(carried_row.values())],
        lost_ids=list(dict.fromkeys(o for o in object_ids if o not in carried_row and o not in new_references)),
    )


# ============================================================================================== shared checks

def _check_num_frames(num_frames: int) -> None:
    if not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")


def _check_clip(clip: Clip, num_frames: int, length: int, what: str) -> None:
    if clip.stop > num_frames:
        raise ValueError(f"clip {clip.index} ends at frame {clip.stop - 1}, past the video's last frame "
                         f"{num_frames - 1}")
    if length != len(clip):
        raise ValueError(f"{what} has {length} frames but clip {clip.index} has {len(clip)} "
                         f"(frames {clip.start}..{clip.stop - 1})")


def _check_follows(clip: Clip, previous_stop: int | None) -> None:
    """Clips must arrive in schedule order: each overlaps exactly the frames the previous one left open."""
    if previous_stop is None:
        if clip.num_overlap:
            raise ValueError(f"clip {clip.index} overlaps a previous clip that was never added")
    elif clip.start + clip.num_overlap != previous_stop:
        raise ValueError(f"clip {clip.index} (frames {clip.start}..{clip.stop - 1}, {clip.num_overlap} overlapping) "
                         f"does not follow the previous clip, which ended at frame {previous_stop - 1}: add clips "
                         "in schedule order")


def _check_geometry(what: str, shape: Sequence[int], geometry: FrameGeometry) -> None:
    if tuple(shape[-2:]) != geometry.logits_size:
        raise ValueError(f"{what} is {tuple(shape)}, but this video's logits are {geometry.logits_size} "
                         f"(padded input {geometry.padded} / 4)")


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
    _check_geometry("mask_logits", masks.shape, geometry)
    return masks[0], classes[0], semantic[0]


# ============================================================================================== VIS / VPS tracks

@dataclass
class _HeldClip:
    logits: Tensor          # (N, T', h, w) float32: the latest clip's logits on its frames that are not final yet
    frames: range           # the T' video frames of `logits`
    ids: list[int]          # track or object id of each of the N rows


class _TrackLinker:
    """Instance tracks of VIS and VPS: per-clip selection, linking across clips, masks kept as RLE per frame.

    The earlier clip decides the overlap frames (quirk 8): a clip's frames become final when the next clip has been
    linked to it, minus the frames that clip's predecessor already decided.
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, max_tracks_per_clip: int, score_threshold: float,
                 iou_threshold: float, average_overlap_logits: bool, max_elements: int):
        _check_num_frames(num_frames)
        if max_tracks_per_clip < 1:
            raise ValueError(f"max_tracks_per_clip must be >= 1, got {max_tracks_per_clip}")
        self.num_frames, self.geometry = num_frames, geometry
        self.max_tracks_per_clip, self.score_threshold = max_tracks_per_clip, score_threshold
        self.iou_threshold, self.average_overlap_logits = iou_threshold, average_overlap_logits
        self.max_elements = max_elements
        self.masks: list[dict[int, RLE]] = [{} for _ in range(num_frames)]  # frame -> track id -> mask
        self._class_logits: dict[int, list[Tensor]] = {}                     # track id -> (1 + C,) per clip
        self._held: _HeldClip | None = None
        self._next_id = 1

    def add_clip(self, clip: Clip, mask_logits: Tensor, class_logits: Tensor) -> None:
        """mask_logits: (Q, T, h, w); class_logits: (Q, 1 + C)."""
        _check_follows(clip, self._held.frames.stop if self._held else None)
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
        self._held = _HeldClip(mask_logits[:, overlap:].clone(), clip.frames[overlap:], track_ids)

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
        _check_clip(clip, self.num_frames, masks.shape[1], "mask_logits")
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
        self._held: _HeldClip | None = None

    def add_clip(self, clip: Clip, logits: Tensor) -> None:
        """logits: (C, T, h, w), semantic queries only."""
        if self.thing_classes and self.thing_classes[-1] >= logits.shape[0]:
            raise ValueError(f"thing class {self.thing_classes[-1]} does not exist among the "
                             f"{logits.shape[0]} semantic classes of this prediction")
        _check_follows(clip, self._held.frames.stop if self._held else None)
        logits = logits.float()
        overlap = clip.num_overlap
        if overlap:
            held = self._held.logits
            held[:, -overlap:] = (held[:, -overlap:] + logits[:, :overlap]) / 2
        self._finalise_held()
        self._held = _HeldClip(logits[:, overlap:].clone(), clip.frames[overlap:], [])

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
        _check_clip(clip, self.num_frames, masks.shape[1], "mask_logits")
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


# ============================================================================================== VOS / PET

@dataclass(frozen=True)
class ObjectClip:
    """One VOS/PET clip as the accumulator needs it: the network's output and which object each row is."""

    prediction: ObjectPrediction
    object_ids: Sequence[int]   # one per row of object_logits: survivors first, then new ones; may repeat (below)
    reference_frames: Mapping[int, int] = field(default_factory=dict)  # object id -> frame of its reference here


@dataclass
class _PendingFrame:
    """An overlap frame as the earlier clip rendered it, waiting for the later clip's masks."""

    frame_index: int
    id_map: np.ndarray      # (H, W) int32 object ids, 0 for none
    order: list[int]        # ids present in id_map, in the order the earlier clip wrote them


class VosAccumulator:
    """Video object segmentation and point-exemplar tracking (DAVIS, BURST; SPEC §6.3).

    Per frame of a clip, each pixel goes to the object with the largest logit if that logit is > 0; logits of an
    object before its reference frame are -1e3. Stitching, as the original does it:
    - on an overlap frame the later clip's mask replaces the earlier one for every object non-empty in the later
      clip; an object empty there (or lost) keeps the earlier clip's mask, so masks may overlap (`VosFrame`);
    - quirk: the final clip leaves its overlap frames to the previous clip and labels its other frames with the
      *previous* clip's object ids, row by row (a video with a single clip thus gets no masks at all).
      `consistent_final_clip=True` stitches the final clip like every other one, with its own ids.

    Rows of a clip may share an id: the original gives a PET object whose point lies on an overlap frame a second,
    point query group beside its mask group (`runner.VosTask.reuse_points_on_overlap`). Its accumulator writes
    each row's pixels into a per-frame dict keyed by id, in row order, skipping rows that win no pixel: so in
    each frame the object's mask is the pixels of its *last* row that wins any (the other rows' pixels are left
    to no object), and it takes its place in the frame's order at its *first* such row. `propagate()` likewise
    carries the last surviving row's masks (`propagate_objects`).

    Between clips the runner calls `propagate()` to learn which objects survive and their reference masks for the
    next clip; when no object survives and none is new it calls `skip_clip()` instead of running the network.
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, *, consistent_final_clip: bool = False,
                 max_elements: int = DEFAULT_MAX_ELEMENTS):
        _check_num_frames(num_frames)
        self.num_frames, self.geometry = num_frames, geometry
        self.consistent_final_clip, self.max_elements = consistent_final_clip, max_elements
        self._held: _HeldClip | None = None
        self._pending: list[_PendingFrame] = []   # the held clip's first frames, as its predecessor rendered them
        self._final_labels: list[int] = []        # ids of the clip before the held one (the quirk's labels)
        self._next_frame = 0                      # frames before this one have been returned
        self._finished = False

    def propagate(self, clip: Clip, reference_ids: Sequence[int] = ()) -> Propagation:
        """Objects of the held clip carried into `clip` (the next one), given the ids that `clip` brings
        references for. Without a held clip (start, or after `skip_clip`) nothing is carried."""
        self._check_open()
        if self._held is None:
            return Propagation(frames=range(clip.start, clip.start), object_ids=[], lost_ids=[],
                               masks=torch.zeros(0, 0, *self.geometry.padded, dtype=torch.bool))
        _check_follows(clip, self._held.frames.stop)
        if clip.num_overlap == 0:
            raise ValueError("VOS/PET carries objects into the next clip through overlapping frames: the clip "
                             "schedule needs overlap >= 1")
        return propagate_objects(self._held.logits[:, -clip.num_overlap:], self._held.ids, reference_ids,
                                 self.geometry, clip.frames[: clip.num_overlap], self.max_elements)

    def add_clip(self, clip: Clip, objects: ObjectClip) -> list[VosFrame]:
        """Add one clip's prediction; returns the frames that became final, in order."""
        self._check_open()
        logits, object_ids = self._checked_logits(clip, objects)
        if self._held is None:
            if clip.start < self._next_frame:
                raise ValueError(f"clip {clip.index} starts at frame {clip.start}, but frames up to "
                                 f"{self._next_frame - 1} are already final")
            done = self._emit_empty_until(clip.start)
        else:
            _check_follows(clip, self._held.frames.stop)
            done = self._render_held(keep_pending=clip.num_overlap)
        self._final_labels = self._held.ids if self._held else []
        self._held = _HeldClip(logits, clip.frames, object_ids)
        return done

    def skip_clip(self, clip: Clip) -> list[VosFrame]:
        """`clip` has no object left to segment (all lost, none new): the held clip's frames all become final,
        the clip's own frames stay empty, and tracking restarts from the next reference."""
        self._check_open()
        _check_clip(clip, self.num_frames, len(clip), "skipped clip")
        done = self._render_held(keep_pending=0) if self._held else []
        self._held, self._pending, self._final_labels = None, [], []
        return done

    def finish(self) -> Iterator[VosFrame]:
        """The remaining frames, in order, up to the video's last frame."""
        self._check_open()
        self._finished = True
        done: list[VosFrame] = []
        if self._held is not None and self.consistent_final_clip:
            done += self._render_held(keep_pending=0)
        elif self._held is not None:
            # Quirk (SPEC §6.3): the final clip writes only the frames after its overlap, labelled by row with
            # the previous clip's ids; the overlap keeps what the previous clip wrote.
            for pending in self._pending:
                done += self._emit(pending.frame_index, _masks_by_id(pending.id_map, pending.order))
            start = len(self._pending)
            for t, id_map, order in self._render(self._held.logits[:, start:], self._final_labels):
                done += self._emit(self._held.frames[start + t], _masks_by_id(id_map, order))
        self._held, self._pending = None, []
        done += self._emit_empty_until(self.num_frames)
        return iter(done)

    # -- internals -----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("finish() was already called for this video")

    def _checked_logits(self, clip: Clip, objects: ObjectClip) -> tuple[Tensor, list[int]]:
        """-> (N, T, h, w) float32 logits, suppressed before references, and the N object ids as ints."""
        logits = objects.prediction.object_logits
        if logits.ndim != 5 or logits.shape[0] != 1:
            raise ValueError(f"object_logits must be (1, N, T, h, w) (inference runs one video), "
                             f"got {tuple(logits.shape)}")
        _check_geometry("object_logits", logits.shape, self.geometry)
        _check_clip(clip, self.num_frames, logits.shape[2], "object_logits")
        ids = list(objects.object_ids)
        if logits.shape[1] != len(ids) or not ids:
            raise ValueError(f"object_logits have {logits.shape[1]} objects but object_ids lists {len(ids)}; a clip "
                             "with no objects goes to skip_clip()")
        if any(not isinstance(i, numbers.Integral) or i < 1 for i in ids):
            raise ValueError(f"object_ids must be positive ints (0 is background), got {ids}")
        ids = [int(i) for i in ids]
        for object_id, frame in objects.reference_frames.items():
            if object_id not in ids or frame not in clip.frames:
                raise ValueError(f"reference_frames: object {object_id} at frame {frame} is not an object of clip "
                                 f"{clip.index} or not one of its frames {clip.start}..{clip.stop - 1}")
        return suppress_before_reference(logits[0].float(), ids, objects.reference_frames, clip.start), ids

    def _render(self, logits: Tensor, labels: Sequence[int]) -> Iterator[tuple[int, np.ndarray, list[int]]]:
        """(N, T, h, w) logits -> per frame (t, (H, W) int32 id map, ids in the map in write order).

        Each pixel goes to its argmax row if that row's logit is > 0, and row i's pixels are labelled labels[i]
        (rows past the end of `labels`, as in the quirk's previous-clip id list, label nothing). Where rows share
        a label, only the last one that wins any pixel keeps it (the class docstring)."""
        num_rows = logits.shape[0]
        row_labels = (list(labels) + [0] * num_rows)[:num_rows]
        for t, best, best_row in argmax_at_original(logits, self.geometry, self.max_elements):
            winner = torch.where(best > 0, best_row + 1, 0)  # (H, W) 1-based row of each pixel, 0: background
            labelled = [r - 1 for r in torch.unique(winner).tolist() if r > 0 and row_labels[r - 1]]  # ascending
            last_row = {row_labels[r]: r for r in labelled}
            lookup = [0] + [label if last_row.get(label) == r else 0 for r, label in enumerate(row_labels)]
            id_map = torch.tensor(lookup, dtype=torch.int32, device=winner.device)[winner]
            yield t, id_map.cpu().numpy(), list(dict.fromkeys(row_labels[r] for r in labelled))

    def _render_held(self, keep_pending: int) -> list[VosFrame]:
        """Write the held clip: its first frames over what its predecessor rendered there, the middle as is; its
        last `keep_pending` frames wait for the next clip."""
        held, pending = self._held, self._pending
        if [p.frame_index for p in pending] != list(held.frames[: len(pending)]):
            raise AssertionError("pending overlap frames do not start the held clip")  # internal invariant
        done: list[VosFrame] = []
        waiting: list[_PendingFrame] = []
        for t, id_map, order in self._render(held.logits, held.ids):
            frame = held.frames[t]
            if t < len(pending):
                done += self._emit(frame, _merge_later_clip(pending[t], id_map, order))
            elif t >= len(held.frames) - keep_pending:
                waiting.append(_PendingFrame(frame, id_map, order))
            else:
                done += self._emit(frame, _masks_by_id(id_map, order))
        self._pending = waiting
        return done

    def _emit(self, frame: int, masks: dict[int, np.ndarray]) -> list[VosFrame]:
        done = self._emit_empty_until(frame)
        done.append(VosFrame(frame_index=frame, size=self.geometry.original, masks=masks))
        self._next_frame = frame + 1
        return done

    def _emit_empty_until(self, stop: int) -> list[VosFrame]:
        done = [VosFrame(frame_index=t, size=self.geometry.original, masks={}) for t in range(self._next_frame, stop)]
        self._next_frame = max(self._next_frame, stop)
        return done


def _masks_by_id(id_map: np.ndarray, order: Sequence[int]) -> dict[int, np.ndarray]:
    """(H, W) id map -> {id: (H, W) bool} for the ids of `order` (those present in the map), in that order."""
    return {i: id_map == i for i in order}


def _merge_later_clip(earlier: _PendingFrame, later_map: np.ndarray, later_order: Sequence[int],
                      ) -> dict[int, np.ndarray]:
    """An overlap frame's masks, as the original's per-object writes leave them (SPEC §6.3): each object non-empty
    in the later clip takes the later mask, the others keep the earlier one. Order: the earlier clip's objects,
    then objects new in the later clip (a dict keeps the position of a key that is rewritten). `later_order`:
    the ids present in `later_map`, in the order the later clip writes them."""
    later = _masks_by_id(later_map, later_order)
    merged = {i: later.get(i, earlier.id_map == i) for i in earlier.order}
    merged.update((i, m) for i, m in later.items() if i not in merged)
    return merged
