"""VOS and PET across clips: which objects each clip segments, and how its masks are stitched (SPEC §6.3).

Per clip, as the original's `TarvisInferenceModel`:

    propagation = accumulator.propagate(clip, ids_with_references_in_clip)   # survivors of the previous clip
    objects = clip_objects(clip, propagation, references_in_clip, geometry, device, reuse_points_on_overlap=...)
    if objects is None:  write(accumulator.skip_clip(clip))                  # nothing left to track here
    else:                write(accumulator.add_clip(clip, ObjectClip(model(...).final, objects.object_ids, ...)))

- a reference (`ObjectReference`) is given to every clip whose frames hold it, as in the original's loader (a
  reference on an overlap frame is given to both clips);
- the previous clip's surviving objects become *mask* objects (PET point objects too, quirk 7) with their
  propagated masks on the overlap frames; a ground-truth mask replaces the propagated one on its own frame;
- new objects follow the survivors: mask references, then point references, each in frame order (the model's
  object order); by default (`reuse_points_on_overlap`) a point also makes a point object for a survivor, as the
  original;
- the object encoder's reference frames are the overlap frames and every reference frame of the clip;
- a clip with no object left and none new is skipped (`VosAccumulator.skip_clip`), and tracking restarts at the
  next reference, as the original's `AllObjectsLostException` path.

Where the original behaves oddly (SPEC §12 quirks 7-8) it is reproduced by default and marked "quirk".
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

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
)
from tarvis_fast.inference.sequences import ObjectReference
from tarvis_fast.model.object_encoder import ObjectReferences
from tarvis_fast.model.outputs import ObjectPrediction

# ============================================================================================== results

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


# ============================================================================================== carrying objects into the next clip

def check_references(references: Sequence[ObjectReference], num_frames: int, size: tuple[int, int],
                     name: str) -> None:
    """Raise ValueError naming the object when a reference does not fit the video."""
    if not references:
        raise ValueError(f"{name}: VOS/PET needs at least one object reference (a mask or a point)")
    seen: set[tuple[int, int]] = set()
    for ref in references:
        where = f"{name}: object {ref.object_id} at frame {ref.frame_index}"
        if (ref.object_id, ref.frame_index) in seen:
            raise ValueError(f"{where}: given twice")
        seen.add((ref.object_id, ref.frame_index))
        if not 0 <= ref.frame_index < num_frames:
            raise ValueError(f"{where}: the video has frames 0..{num_frames - 1}")
        if ref.mask is not None:
            if ref.mask.shape != size:
                raise ValueError(f"{where}: mask is {ref.mask.shape}, the video's frames are {size}")
            if not ref.mask.any():
                raise ValueError(f"{where}: mask is empty")
        elif not (0 <= ref.point[0] < size[0] and 0 <= ref.point[1] < size[1]):
            raise ValueError(f"{where}: point (y, x) = {ref.point} lies outside the {size[0]}x{size[1]} frame")


@dataclass(frozen=True)
class ClipObjects:
    """The objects of one VOS/PET clip: what the network takes and what the accumulator needs."""

    references: ObjectReferences    # for the model: mask objects, then point objects
    object_ids: list[int]           # one per object, in the model's order; an id may be both a mask and a point
    reference_frames: dict[int, int]  # object id -> video frame of its reference in this clip


def clip_objects(clip: Clip, propagation: Propagation, references: Sequence[ObjectReference],
                 geometry: FrameGeometry, device: torch.device, *, reuse_points_on_overlap: bool,
                 ) -> ClipObjects | None:
    """Build one clip's objects (on `device`) from the survivors of the previous clip and the references on the
    clip's frames (module docstring); None when there is no object to segment."""
    survivors = propagation.object_ids
    mask_refs = [r for r in references if r.mask is not None]
    mask_ids = list(dict.fromkeys([*survivors, *(r.object_id for r in mask_refs)]))
    # A point on an overlap frame comes back in the next clip, where its object has (usually) survived as a mask
    # object. Quirk: the original (TarvisInferenceModel.initialize_vos_queries) makes a point object of every
    # point of the clip, survivor or not, so such an object gets a second query group. Its two rows share the id;
    # in a frame where the point row wins any pixel, the object's mask is the point row's pixels alone, and the
    # point row's masks are what propagates unless it is empty on every overlap frame (see VosAccumulator).
    # reuse_points_on_overlap=False uses a point only where its object is not a survivor. Either way an object
    # given a mask in this clip gets no point object, and one given several points gets one, from the first
    # (the benchmarks give one point per object).
    mask_ref_ids = {r.object_id for r in mask_refs}
    first_points: dict[int, ObjectReference] = {}  # object id -> its point reference, in the model's order
    for ref in references:
        if ref.mask is None and ref.object_id not in mask_ref_ids and (
                reuse_points_on_overlap or ref.object_id not in survivors):
            first_points.setdefault(ref.object_id, ref)
    point_ids = list(first_points)
    if not mask_ids and not point_ids:
        return None
    frames = sorted({*propagation.frames, *(r.frame_index for r in references)})
    column = {frame: i for i, frame in enumerate(frames)}

    masks = mask_frames = None
    if mask_ids:
        row = {object_id: i for i, object_id in enumerate(mask_ids)}
        masks = torch.zeros(1, len(mask_ids), len(frames), *geometry.padded, dtype=torch.bool, device=device)
        overlap_columns = [column[f] for f in propagation.frames]
        for object_id, propagated in zip(survivors, propagation.masks):
            masks[0, row[object_id], overlap_columns] = propagated.to(device)
        for ref in mask_refs:  # ground truth replaces the propagated mask on its frame
            masks[0, row[ref.object_id], column[ref.frame_index]] = reference_mask(ref.mask, geometry).to(device)
        mask_frames = torch.tensor([f - clip.start for f in frames], dtype=torch.int64)

    points = point_frames = None
    if point_ids:
        height, width = geometry.original
        chosen = list(first_points.values())
        # The original's normalisation: pixel centres, relative to the frame (SPEC §6.3).
        points = torch.tensor([[((r.point[0] + 0.5) / height, (r.point[1] + 0.5) / width) for r in chosen]],
                              dtype=torch.float32, device=device).clamp(0, 1)
        point_frames = torch.tensor([[r.frame_index - clip.start for r in chosen]], dtype=torch.int64,
                                    device=device)

    object_ids = mask_ids + point_ids
    # As the original, every object with a reference in this clip has its logits before that frame suppressed.
    # With two references in one clip the earliest counts (the original keeps the latest, which would blank the
    # object on its own earlier reference frame).
    reference_frames: dict[int, int] = {}
    for ref in references:
        if ref.object_id in object_ids:
            reference_frames[ref.object_id] = min(ref.frame_index, reference_frames.get(ref.object_id, ref.frame_index))
    return ClipObjects(ObjectReferences(masks=masks, mask_frames=mask_frames, points=points,
                                        point_frames=point_frames), object_ids, reference_frames)


def reference_mask(mask: np.ndarray, geometry: FrameGeometry) -> Tensor:
    """(H, W) bool at the video's resolution -> (Hp, Wp) bool at the padded input size (resized as the original,
    padded with zeros). A mask too small to survive the resize keeps the one pixel it covers most, so that the
    object still has a reference."""
    resized = geometry.resize_masks(mask[None])[0]
    if not resized.any():
        h, w = geometry.resized
        coverage = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        resized = np.zeros((h, w), bool)
        resized[np.unravel_index(np.argmax(coverage), coverage.shape)] = True
    return geometry.pad(torch.from_numpy(np.ascontiguousarray(resized)), value=0)


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


# ============================================================================================== stitching

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
    point query group beside its mask group (`runner.VosRequest.reuse_points_on_overlap`). Its accumulator writes
    each row's pixels into a per-frame dict keyed by id, in row order, skipping rows that win no pixel: so in
    each frame the object's mask is the pixels of its *last* row that wins any (the other rows' pixels are left
    to no object), and it takes its place in the frame's order at its *first* such row. `propagate()` likewise
    carries the last surviving row's masks (`propagate_objects`).

    Between clips the runner calls `propagate()` to learn which objects survive and their reference masks for the
    next clip; when no object survives and none is new it calls `skip_clip()` instead of running the network.
    """

    def __init__(self, num_frames: int, geometry: FrameGeometry, *, consistent_final_clip: bool = False,
                 max_elements: int = DEFAULT_MAX_ELEMENTS):
        check_num_frames(num_frames)
        self.num_frames, self.geometry = num_frames, geometry
        self.consistent_final_clip, self.max_elements = consistent_final_clip, max_elements
        self._held: HeldClip | None = None
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
        check_follows(clip, self._held.frames.stop)
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
            check_follows(clip, self._held.frames.stop)
            done = self._render_held(keep_pending=clip.num_overlap)
        self._final_labels = self._held.ids if self._held else []
        self._held = HeldClip(logits, clip.frames, object_ids)
        return done

    def skip_clip(self, clip: Clip) -> list[VosFrame]:
        """`clip` has no object left to segment (all lost, none new): the held clip's frames all become final,
        the clip's own frames stay empty, and tracking restarts from the next reference."""
        self._check_open()
        check_clip(clip, self.num_frames, len(clip), "skipped clip")
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
        check_logits_size("object_logits", logits.shape, self.geometry)
        check_clip(clip, self.num_frames, logits.shape[2], "object_logits")
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
