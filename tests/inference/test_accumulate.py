"""Stitching of hand-built clip logits, each test stating the answer it expects.

Videos are 64x64 (no resize, no padding), so logits are 16x16 and a logit block (r0, r1, c0, c1) of +L in a field
of -L comes back as the 4x block minus its four corner pixels (derived and checked in test_clips.py): `full()`.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.inference.accumulate import (
    VisAccumulator,
    VpsAccumulator,
    match_tracks,
    select_clip_tracks,
    select_panoptic_tracks,
)
from tarvis_fast.inference.propagation import ObjectClip, VosAccumulator, propagate_objects
from tarvis_fast.inference.clips import FrameGeometry, ImagesResizer, clip_schedule
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction

G = FrameGeometry.for_resized((64, 64), (64, 64))
LEVEL = 10.0


def logit_map(*blocks, level=LEVEL) -> torch.Tensor:
    """(16, 16): +level on the blocks, -level elsewhere."""
    x = torch.full(G.logits_size, -level)
    for r0, r1, c0, c1 in blocks:
        x[r0:r1, c0:c1] = level
    return x


def full(*blocks) -> np.ndarray:
    """(64, 64) bool: what a block of logit_map() becomes at the video's resolution."""
    out = np.zeros(G.original, bool)
    for r0, r1, c0, c1 in blocks:
        out[4 * r0:4 * r1, 4 * c0:4 * c1] = True
        out[[4 * r0, 4 * r0, 4 * r1 - 1, 4 * r1 - 1], [4 * c0, 4 * c1 - 1, 4 * c0, 4 * c1 - 1]] = False
    return out


def clip_logits(per_query_frames) -> torch.Tensor:
    """[[block or None per frame] per query] -> (1, Q, T, 16, 16); None is an empty mask."""
    return torch.stack([torch.stack([logit_map(b) if b else logit_map() for b in frames])
                        for frames in per_query_frames])[None]


def instance_prediction(per_query_frames, class_logits, semantic=None) -> InstancePrediction:
    masks = clip_logits(per_query_frames)
    classes = torch.tensor(class_logits, dtype=torch.float32)[None]
    if semantic is None:
        semantic = torch.zeros(1, classes.shape[-1], *masks.shape[2:])
    return InstancePrediction(mask_logits=masks, class_logits=classes, semantic_logits=semantic)


def object_clip(per_object_frames, ids, references=None) -> ObjectClip:
    logits = clip_logits(per_object_frames)
    return ObjectClip(ObjectPrediction(object_logits=logits, background_logits=torch.zeros_like(logits[:, :1])),
                      object_ids=ids, reference_frames=references or {})


def masks_of(segmentations):
    return [None if rle is None else decode_rle(rle) for rle in segmentations]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(logits) -> np.ndarray:
    e = np.exp(np.asarray(logits, np.float64))
    return e / e.sum()


# ============================================================================================== VIS

def test_vis_links_tracks_across_three_clips_and_earlier_clip_wins_overlaps():
    # 8 frames, clips 0..3, 2..5, 4..7. One class, so a track's score is sigmoid of its mean class logit.
    a, a2 = (2, 4, 2, 4), (2, 4, 2, 5)         # track A moves between a and a2: IoU (4+1)/(6+1) > 0.5, linked
    b, y = (10, 12, 10, 12), (2, 4, 10, 12)    # B and Y never overlap: IoU 1/9, so Y is a new track
    clips = clip_schedule(8, 4, 2)
    acc = VisAccumulator(8, G, tracks_per_video=10)
    assert acc.add_clip(clips[0], instance_prediction([[a] * 4, [b] * 4], [[0, 3.0], [0, 1.0]])) == []
    assert acc.add_clip(clips[1], instance_prediction([[a2] * 4, [y] * 4], [[0, 5.0], [0, 2.0]])) == []
    assert acc.add_clip(clips[2], instance_prediction([[a] * 4, [y] * 4], [[0, 4.0], [0, 1.0]])) == []
    tracks = list(acc.finish())

    # A: mean logit (3+5+4)/3 = 4; Y: (2+1)/2 = 1.5; B: 1 -> best first
    assert [t.category_id for t in tracks] == [1, 1, 1]
    np.testing.assert_allclose([t.score for t in tracks], [sigmoid(4), sigmoid(1.5), sigmoid(1)], rtol=1e-6)
    track_a, track_y, track_b = (masks_of(t.segmentations) for t in tracks)
    # overlap frames 2,3 keep clip 0's mask (a), frames 4,5 keep clip 1's (a2), not the later clip's
    for frame, block in enumerate([a, a, a, a, a2, a2, a, a]):
        np.testing.assert_array_equal(track_a[frame], full(block), err_msg=f"frame {frame}")
    # Y starts in clip 1, but clip 0 decided frames 2,3: Y has no entry there
    assert track_y[:4] == [None] * 4
    for frame in range(4, 8):
        np.testing.assert_array_equal(track_y[frame], full(y))
    assert all(m is not None and (m == full(b)).all() for m in track_b[:4]) and track_b[4:] == [None] * 4


def test_match_tracks_iou_boundary_is_exclusive():
    prev = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    cur = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    prev[0, 0, 1, 0:3], cur[0, 0, 1, 1:5] = True, True    # inter 2, union 5: (2+1)/(5+1) = 0.5 exactly -> rejected
    prev[1, 0, 8, 0:3], cur[1, 0, 8, 1:4] = True, True    # inter 2, union 4: 3/5 = 0.6 -> accepted
    assert match_tracks(prev, cur) == ([1], [1])


def test_match_tracks_prefers_the_global_optimum_over_greedy():
    # Pixel intervals of one flattened 16x16 frame: A=[10,110) Y=[0,100) X=[15,115) B=[35,135).
    # Smoothed IoUs: A-X 96/106=.906, A-Y 91/111=.820, B-X 81/121=.669, B-Y 66/136=.485.
    # Greedy takes A-X first and is left with B-Y < 0.5 (one link); Hungarian takes A-Y + B-X = 1.489 > 1.391.
    def interval(lo, hi):
        m = torch.zeros(256, dtype=torch.bool)
        m[lo:hi] = True
        return m.view(1, 16, 16)

    prev = torch.stack([interval(10, 110), interval(35, 135)])   # A, B
    cur = torch.stack([interval(15, 115), interval(0, 100)])     # X, Y
    assert match_tracks(prev, cur) == ([0, 1], [1, 0])


def test_select_clip_tracks_threshold_and_cap():
    # one class: scores sigmoid(2, -1, 0, 3, 1) = .881 .269 .5 .953 .731 (softmax of [0, 0] is exactly 0.5)
    logits = torch.tensor([[0, 2.0], [0, -1.0], [0, 0.0], [0, 3.0], [0, 1.0]])
    assert select_clip_tracks(logits, 10, 0.0).tolist() == [0, 1, 2, 3, 4]   # threshold 0: no filtering
    assert select_clip_tracks(logits, 2, 0.0).tolist() == [3, 0]             # capped: best first
    assert select_clip_tracks(logits, 10, 0.5).tolist() == [0, 2, 3, 4]     # >= 0.5 is kept
    assert select_clip_tracks(logits, 3, 0.5).tolist() == [3, 0, 4]


def test_vis_top_k_pairs_duplicate_a_track_and_share_no_pixels_within_a_class():
    m1, m2, m3 = (2, 6, 2, 6), (4, 8, 4, 8), (10, 12, 10, 12)  # m1 and m2 overlap on cells (4, 6, 4, 6)
    class_logits = [[0, 5.0, 4.9], [0, 0.0, 3.0], [0, -2.0, -2.0]]
    prediction = instance_prediction([[m1, m1], [m2, m2], [m3, m3]], class_logits)
    # float64 reference: pairs (track, class, prob) of the 3 best
    p = [softmax(row)[1:] for row in class_logits]
    expected = sorted(((p[t][c], t, c + 1) for t in range(3) for c in range(2)), reverse=True)[:3]
    assert [(t, c) for _, t, c in expected] == [(1, 2), (0, 1), (0, 2)]   # track 0 twice, with classes 1 and 2

    acc = VisAccumulator(2, G, tracks_per_video=3)
    acc.add_clip(clip_schedule(2, 12, 6)[0], prediction)
    tracks = list(acc.finish())
    assert [t.category_id for t in tracks] == [2, 1, 2]
    np.testing.assert_allclose([t.score for t in tracks], [s for s, _, _ in expected], rtol=1e-6)
    for frame in range(2):
        np.testing.assert_array_equal(masks_of(tracks[0].segmentations)[frame], full(m2))       # class 2, best
        np.testing.assert_array_equal(masks_of(tracks[1].segmentations)[frame], full(m1))       # alone in class 1
        np.testing.assert_array_equal(masks_of(tracks[2].segmentations)[frame], full(m1) & ~full(m2))

    acc = VisAccumulator(2, G, tracks_per_video=10)   # more than the 3 x 2 pairs there are
    acc.add_clip(clip_schedule(2, 12, 6)[0], prediction)
    assert len(list(acc.finish())) == 6


def reference_chain(logits: torch.Tensor) -> np.ndarray:
    """(16, 16) logits -> (64, 64) bool through SPEC §6's chain in float64 (no padding or resize here)."""
    up = F.interpolate(logits.double()[None, None], scale_factor=4.0, mode="bilinear", align_corners=False)
    return (up[0, 0] > 0).numpy()


@pytest.mark.parametrize("average", [False, True])
def test_vis_overlap_averaging_is_opt_in(average):
    # 3 frames, clips 0..1 and 1..2 sharing frame 1. On frame 1 clip 0 says +2 on cells (2,4,2,6), clip 1 says +6
    # on (2,4,2,4) and -6 elsewhere. Binarised IoU (4+1)/(8+1) = .56: linked. The quirk keeps clip 0's logits on
    # frame 1; the opt-in averages them, which drops cells (2,4,4,6) ((2-6)/2 < 0).
    prev = logit_map((2, 4, 2, 6), level=2.0)
    cur = logit_map((2, 4, 2, 4), level=6.0)
    clips = clip_schedule(3, 2, 1)
    acc = VisAccumulator(3, G, tracks_per_video=1, average_overlap_logits=average)
    first = instance_prediction([[(2, 4, 2, 4), None]], [[0, 1.0]])
    first.mask_logits[0, 0, 1] = prev
    second = instance_prediction([[None, (2, 4, 2, 4)]], [[0, 1.0]])
    second.mask_logits[0, 0, 0] = cur
    acc.add_clip(clips[0], first)
    acc.add_clip(clips[1], second)
    (track,) = acc.finish()
    frame1 = masks_of(track.segmentations)[1]
    np.testing.assert_array_equal(frame1, reference_chain((prev + cur) / 2 if average else prev))
    assert frame1[10, 18] == (not average)  # a pixel inside cells (2, 4, 4, 6)


def test_vis_single_frame_video():
    acc = VisAccumulator(1, G, tracks_per_video=10, max_tracks_per_clip=1)
    (clip,) = clip_schedule(1, 12, 6)
    acc.add_clip(clip, instance_prediction([[(3, 5, 3, 5)], [(8, 9, 8, 9)]], [[0, 0.0], [0, 2.0]]))
    (track,) = acc.finish()  # one query per clip: the better one
    assert track.score == pytest.approx(sigmoid(2)) and len(track.segmentations) == 1
    np.testing.assert_array_equal(decode_rle(track.segmentations[0]), full((8, 9, 8, 9)))


# ============================================================================================== VPS

ROAD, SKY, CAR = 0, 1, 2   # stuff, stuff, thing; class logits are [background, road, sky, car]


def semantic_logits(frames) -> torch.Tensor:
    """[(road, sky, car) (16, 16) maps per frame] -> (1, 3, T, 16, 16)."""
    return torch.stack([torch.stack(list(f)) for f in frames], dim=1)[None]


def test_vps_semantic_overlap_average_and_thing_suppression():
    # 3 frames, clips 0..1 and 1..2. Car logits are the largest everywhere but are a thing: suppressed.
    top_road = logit_map((0, 8, 0, 16), level=1.0)            # road +1 on the top half, -1 below; sky 0
    zero, car = torch.zeros(16, 16), torch.full((16, 16), 5.0)
    clip0 = semantic_logits([(top_road, zero, car), (top_road, zero, car)])
    clip1 = semantic_logits([(torch.full((16, 16), -3.0), zero, car), (torch.full((16, 16), 3.0), zero, car)])
    no_tracks = [[5.0, 0, 0, 0]]  # background: below the per-clip threshold
    clips = clip_schedule(3, 2, 1)
    acc = VpsAccumulator(3, G, thing_classes=[CAR])
    acc.add_clip(clips[0], instance_prediction([[None, None]], no_tracks, clip0))
    acc.add_clip(clips[1], instance_prediction([[None, None]], no_tracks, clip1))
    frames = list(acc.finish())
    expected_top = np.where(np.arange(64)[:, None] < 32, ROAD, SKY) * np.ones((1, 64), int)
    # frame 1: road averages to (1-3)/2 = -1 (top) and -2 (bottom) < sky's 0: all sky. The earlier clip alone
    # would have given the top half road.
    for frame, expected in zip(frames, [expected_top, np.full((64, 64), SKY), np.full((64, 64), ROAD)]):
        np.testing.assert_array_equal(frame.semantic, expected, err_msg=f"frame {frame.frame_index}")
        assert not frame.instance.any() and frame.segments == {}
    assert [f.frame_index for f in frames] == [0, 1, 2]


def test_vps_paints_things_in_ascending_score_order():
    car1, car2, blob = (2, 6, 2, 6), (4, 8, 4, 8), (10, 12, 10, 12)   # car1 and car2 overlap on cells (4,6,4,6)
    class_logits = [
        [0, 0, 0, 4.0],    # car, p = e^4/(3+e^4) = .948
        [0, 0, 0, 2.0],    # car, p = e^2/(3+e^2) = .711
        [0, 5.0, 0, 0],    # road: a stuff class, kept in the clip (p .98) but never painted
        [5.0, 0, 0, 0],    # background: dropped in the clip (best non-background p .007)
    ]
    sky = semantic_logits([(logit_map(level=1.0), logit_map((0, 16, 0, 16), level=1.0), torch.zeros(16, 16))])
    acc = VpsAccumulator(1, G, thing_classes=[CAR])
    acc.add_clip(clip_schedule(1, 6, 3)[0], instance_prediction([[car1], [car2], [blob], [blob]], class_logits, sky))
    (frame,) = acc.finish()
    # track ids follow the kept queries: car1 1, car2 2, road track 3. car2 (lower score) is painted first, so
    # car1 covers the shared pixels.
    expected_instance = np.where(full(car1), 1, np.where(full(car2), 2, 0))
    np.testing.assert_array_equal(frame.instance, expected_instance)
    np.testing.assert_array_equal(frame.semantic, np.where(expected_instance > 0, CAR, SKY))
    assert frame.segments == {1: CAR, 2: CAR}


def test_select_panoptic_tracks_drops_background_stuff_and_low_scores():
    logits = {
        1: torch.tensor([0, 0, 0, 4.0]),        # car .948: kept
        2: torch.tensor([0, 0, 0.9, 1.1]),      # car, but p = e^1.1/(2+e^.9+e^1.1) = .40 <= .5: dropped
        3: torch.tensor([0, 0, 5.0, 0]),        # sky (stuff): dropped
        4: torch.tensor([6.0, 0, 0, 1.0]),      # background: dropped
        5: torch.tensor([0, 0, 0, 3.0]),        # car .87: kept
    }
    kept = select_panoptic_tracks(logits, {CAR}, 0.5, 1000)
    assert list(kept) == [1, 5] and [c for c, _ in kept.values()] == [CAR, CAR]
    np.testing.assert_allclose([s for _, s in kept.values()], [softmax([0, 0, 0, 4])[3], softmax([0, 0, 0, 3])[3]],
                               rtol=1e-6)
    assert list(select_panoptic_tracks(logits, {CAR}, 0.5, 1)) == [1]     # the cap keeps the best


# ============================================================================================== VOS / PET

def check_frames(frames, expected, first=0):
    """expected: per frame from `first` on, {object id: (H, W) mask} in write order."""
    assert [f.frame_index for f in frames] == list(range(first, first + len(expected)))
    for frame, want in zip(frames, expected):
        assert list(frame.masks) == list(want), f"frame {frame.frame_index}: ids {list(frame.masks)}"
        for object_id, mask in want.items():
            np.testing.assert_array_equal(frame.masks[object_id], mask, err_msg=f"frame {frame.frame_index}")


P1, P1B, P2, P2C = (2, 4, 2, 4), (2, 4, 6, 8), (8, 10, 8, 10), (12, 14, 2, 4)


def three_clip_video(acc: VosAccumulator):
    """8 frames, clips 0..3, 2..5, 4..7. Object 1 moves to P1B in clip 1 and vanishes from frames 4,5; object 2
    is empty on frames 2,3 of clip 1 and moves to P2C in clip 2. Returns frames per call."""
    clips = clip_schedule(8, 4, 2)
    out = [acc.add_clip(clips[0], object_clip([[P1] * 4, [P2] * 4], [1, 2]))]
    assert acc.propagate(clips[1]).object_ids == [1, 2]
    out.append(acc.add_clip(clips[1], object_clip([[P1B, P1B, None, None], [None, None, P2, P2]], [1, 2])))
    carried = acc.propagate(clips[2])
    # object 1 is empty on both overlap frames 4,5 and gets no new reference: lost
    assert (carried.object_ids, carried.lost_ids, carried.frames) == ([2], [1], range(4, 6))
    assert carried.masks.shape == (1, 2, 64, 64)
    np.testing.assert_array_equal(carried.masks[0, 1].numpy(), full(P2))
    out.append(acc.add_clip(clips[2], object_clip([[P2C] * 4], [2])))
    out.append(list(acc.finish()))
    return out


def test_vos_stitching_reproduces_the_original_by_default():
    calls = three_clip_video(VosAccumulator(8, G))
    assert [[f.frame_index for f in c] for c in calls] == [[], [0, 1], [2, 3], [4, 5, 6, 7]]
    check_frames(sum(calls, []), [
        {1: full(P1), 2: full(P2)}, {1: full(P1), 2: full(P2)},
        # overlap 2,3: object 1 takes clip 1's mask; object 2, empty in clip 1, keeps clip 0's
        {1: full(P1B), 2: full(P2)}, {1: full(P1B), 2: full(P2)},
        # the last overlap keeps clip 1's masks (quirk) ...
        {2: full(P2)}, {2: full(P2)},
        # ... and the final clip's row 0 (object 2) is labelled with clip 1's first id, 1 (quirk)
        {1: full(P2C)}, {1: full(P2C)},
    ])


def test_vos_consistent_final_clip_stitches_it_like_the_others():
    calls = three_clip_video(VosAccumulator(8, G, consistent_final_clip=True))
    frames = sum(calls, [])
    check_frames(frames[4:], [{2: full(P2C)}] * 4, first=4)  # clip 2 overwrites frames 4,5 and keeps its ids


def test_vos_object_first_given_in_a_later_clip():
    # 8 frames, clips 0..3, 2..5, 4..7. Object 3's reference is frame 3 (clip 1); its logits are positive from
    # frame 2 on, but frames before the reference are suppressed. On frame 3 object 1 is empty in clip 1, so it
    # keeps clip 0's mask, and object 3, written after it, overlaps it. Object 1 comes back at F in frames 4..7.
    q, f = (3, 7, 1, 5), (10, 12, 10, 12)
    clips = clip_schedule(8, 4, 2)
    acc = VosAccumulator(8, G)
    frames = acc.add_clip(clips[0], object_clip([[P1] * 4], [1]))
    carried = acc.propagate(clips[1], reference_ids=[3])
    assert carried.object_ids == [1] and carried.lost_ids == []
    frames += acc.add_clip(clips[1], object_clip([[P1, None, f, f], [q] * 4], [1, 3], {3: 3}))
    assert acc.propagate(clips[2]).object_ids == [1, 3]
    frames += acc.add_clip(clips[2], object_clip([[f] * 4, [q] * 4], [1, 3]))
    frames += list(acc.finish())
    check_frames(frames, [{1: full(P1)}, {1: full(P1)}, {1: full(P1)}, {1: full(P1), 3: full(q)}]
                 + [{1: full(f), 3: full(q)}] * 4)
    np.testing.assert_array_equal(frames[3].id_map(), np.where(full(q), 3, np.where(full(P1), 1, 0)))


def test_vos_lost_objects_skip_and_restart():
    # 10 frames, clips 0..3, 2..5, 4..7, 6..9. Object 1 is gone by frames 2,3: lost, nothing to run on clip 1.
    # Object 5 is first given at frame 5, in clip 2, and tracked to the end.
    p5 = (6, 9, 6, 9)
    clips = clip_schedule(10, 4, 2)
    acc = VosAccumulator(10, G)
    out = acc.add_clip(clips[0], object_clip([[P1, P1, None, None]], [1]))
    carried = acc.propagate(clips[1])
    assert (carried.object_ids, carried.lost_ids, tuple(carried.masks.shape)) == ([], [1], (0, 2, 64, 64))
    assert acc.propagate(clips[1], reference_ids=[1]).lost_ids == []  # a new reference would revive it
    out += acc.skip_clip(clips[1])
    assert [f.frame_index for f in out] == [0, 1, 2, 3]  # clip 0 is final in full, its overlap included
    assert acc.propagate(clips[2]).object_ids == []       # nothing held after the skip
    out += acc.add_clip(clips[2], object_clip([[p5] * 4], [5], {5: 5}))
    assert acc.propagate(clips[3]).object_ids == [5]
    out += acc.add_clip(clips[3], object_clip([[p5] * 4], [5]))
    out += list(acc.finish())
    check_frames(out, [{1: full(P1)}, {1: full(P1)}, {}, {}, {}] + [{5: full(p5)}] * 5)


@pytest.mark.parametrize("consistent", [False, True])
def test_vos_video_shorter_than_one_clip(consistent):
    # 5 frames, first reference at frame 2: one clip, frames 2..4. The original labels a final clip with the
    # previous clip's ids; with no previous clip there are none, so it writes no mask at all (quirk).
    (clip,) = clip_schedule(5, 12, 6, first_frame=2)
    acc = VosAccumulator(5, G, consistent_final_clip=consistent)
    assert [f.frame_index for f in acc.add_clip(clip, object_clip([[P1] * 3], [4], {4: 2}))] == [0, 1]
    rest = list(acc.finish())
    assert [f.frame_index for f in rest] == [2, 3, 4]
    for frame in rest:
        assert list(frame.masks) == ([4] if consistent else [])
        if consistent:
            np.testing.assert_array_equal(frame.masks[4], full(P1))


def test_vos_single_frame_video():
    (clip,) = clip_schedule(1, 12, 6)
    acc = VosAccumulator(1, G, consistent_final_clip=True)
    assert acc.add_clip(clip, object_clip([[P1], [P2]], [1, 2])) == []
    (frame,) = acc.finish()
    np.testing.assert_array_equal(frame.id_map(), np.where(full(P1), 1, np.where(full(P2), 2, 0)))


@pytest.mark.parametrize("consistent", [False, True])
def test_vos_rows_sharing_an_id(consistent):
    # A PET object given again by its point on an overlap frame has two rows, as in the original: object 2 has a
    # mask row (2m) and a point row (2p) in clip 1. Per frame its mask is that of the last of its rows that wins
    # a pixel, placed in write order at the first such row; the other row's pixels go to no object. Blocks:
    # A = P2, B = P2C, all disjoint. 8 frames, clips 0..3, 2..5, 4..7; object 2's point is on frame 3.
    a, b = P2, P2C
    clips = clip_schedule(8, 4, 2)
    acc = VosAccumulator(8, G, consistent_final_clip=consistent)
    frames = acc.add_clip(clips[0], object_clip([[a] * 4, [P1] * 4], [2, 1]))
    # rows 2m, 1, 2p; both rows of object 2 are suppressed before its point's frame 3
    frames += acc.add_clip(clips[1], object_clip([[a, a, None, None], [P1] * 4, [b, b, None, b]], [2, 1, 2], {2: 3}))
    carried = acc.propagate(clips[2])
    # 2m is empty on the overlap frames 4, 5, 2p is not: object 2 carries 2p's masks and, its first surviving row
    # coming after object 1's, follows object 1. It is not lost.
    assert (carried.object_ids, carried.lost_ids) == ([1, 2], [])
    np.testing.assert_array_equal(carried.masks[1].numpy(), np.stack([full(), full(b)]))
    frames += acc.add_clip(clips[2], object_clip([[P1B] * 4, [b] * 4], [1, 2]))
    frames += list(acc.finish())
    expected = [
        {2: full(a), 1: full(P1)}, {2: full(a), 1: full(P1)},
        {2: full(a), 1: full(P1)},  # frame 2: object 2 is suppressed in clip 1 and keeps clip 0's mask
        {2: full(b), 1: full(P1)},  # frame 3: both rows of 2 win pixels; 2p, the later, replaces 2m's A
    ]
    if consistent:
        expected += [{1: full(P1B), 2: full(b)}] * 4
    else:
        # frames 4, 5 keep clip 1's: on 4 neither row of 2 wins a pixel, on 5 only 2p, after object 1; the final
        # clip's rows (objects 1, 2) are labelled with clip 1's ids 2, 1 (quirk): the labels swap.
        expected += [{1: full(P1)}, {1: full(P1), 2: full(b)}, {2: full(P1B), 1: full(b)}, {2: full(P1B), 1: full(b)}]
    check_frames(frames, expected)


def test_propagation_of_rows_sharing_an_id():
    # Rows (ids) 3, 2, 5, 2, 4, 4 on one overlap frame: the first row of 2 is empty, both rows of 4 are.
    a, b, c, d = (2, 4, 2, 4), (2, 4, 8, 10), (8, 10, 2, 4), (8, 10, 8, 10)
    logits = torch.stack([logit_map(a), logit_map(), logit_map(b), logit_map(c), logit_map(), logit_map()])
    carried = propagate_objects(logits[:, None], [3, 2, 5, 2, 4, 4], [], G, range(4, 5))
    assert (carried.object_ids, carried.lost_ids) == ([3, 5, 2], [4])
    np.testing.assert_array_equal(carried.masks[:, 0].numpy(), np.stack([full(a), full(b), full(c)]))
    # two surviving rows: the later one's masks
    both = torch.stack([logit_map(a), logit_map(d)])[:, None]
    carried = propagate_objects(both, [6, 6], [], G, range(4, 5))
    assert carried.object_ids == [6]
    np.testing.assert_array_equal(carried.masks[0, 0].numpy(), full(d))


def test_propagation_is_at_the_padded_input_size():
    # 60x60 frames pad to 64x64. Logits positive only on the last cell, pixels 60..63: all padding. Propagated
    # masks are the x4 upsample alone at 64x64 (they go back into the network), so they keep that corner; the
    # frames written out are cropped to 60x60 and stay empty.
    g = FrameGeometry.for_resized((60, 60), (60, 60))
    clips = clip_schedule(3, 2, 1)
    acc = VosAccumulator(3, g)
    corner = clip_logits([[(15, 16, 15, 16)] * 2])
    acc.add_clip(clips[0], ObjectClip(ObjectPrediction(corner, corner[:, :1]), [7]))
    carried = acc.propagate(clips[1])
    assert carried.object_ids == [7] and carried.masks.shape == (1, 1, 64, 64)
    np.testing.assert_array_equal(carried.masks[0, 0].numpy(), reference_chain(corner[0, 0, 1]))
    assert carried.masks[0, 0, 60:, 60:].sum() == 15  # the 4x4 cell but its inner corner (60, 60)
    (frame0,) = acc.add_clip(clips[1], ObjectClip(ObjectPrediction(corner, corner[:, :1]), [7]))
    assert frame0.size == (60, 60) and frame0.masks == {}


# ============================================================================================== bad input

def test_bad_input_is_named():
    clips = clip_schedule(8, 4, 2)
    vis = VisAccumulator(8, G, tracks_per_video=10)
    with pytest.raises(ValueError, match="clip 1 overlaps a previous clip that was never added"):
        vis.add_clip(clips[1], instance_prediction([[None] * 4], [[0, 1.0]]))
    vis.add_clip(clips[0], instance_prediction([[None] * 4], [[0, 1.0]]))
    with pytest.raises(ValueError, match="does not follow the previous clip"):
        vis.add_clip(clips[2], instance_prediction([[None] * 4], [[0, 1.0]]))
    with pytest.raises(ValueError, match="mask_logits has 3 frames but clip 1 has 4"):
        vis.add_clip(clips[1], instance_prediction([[None] * 3], [[0, 1.0]]))
    bad_size = InstancePrediction(torch.zeros(1, 1, 4, 8, 8), torch.zeros(1, 1, 2), torch.zeros(1, 2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"logits are \(16, 16\)"):
        vis.add_clip(clips[1], bad_size)
    list(vis.finish())
    with pytest.raises(RuntimeError, match="already called"):
        vis.finish()

    vps = VpsAccumulator(8, G, thing_classes=[5])
    with pytest.raises(ValueError, match="thing class 5 does not exist"):
        vps.add_clip(clips[0], instance_prediction([[None] * 4], [[0, 0, 0, 1.0]],
                                                   torch.zeros(1, 3, 4, 16, 16)))

    vos = VosAccumulator(8, G)
    with pytest.raises(ValueError, match="object_logits have 2 objects but object_ids lists 1"):
        vos.add_clip(clips[0], object_clip([[None] * 4, [None] * 4], [1]))
    with pytest.raises(ValueError, match="positive ints"):
        vos.add_clip(clips[0], object_clip([[None] * 4, [None] * 4], [1, 0]))
    with pytest.raises(ValueError, match="object 1 at frame 6"):
        vos.add_clip(clips[0], object_clip([[None] * 4], [1], {1: 6}))
    schedule = clip_schedule(8, 4, 0)
    vos.add_clip(schedule[0], object_clip([[P1] * 4], [1]))
    with pytest.raises(ValueError, match="overlap >= 1"):
        vos.propagate(schedule[1])


# ============================================================================================== real data

def test_vos_on_a_real_davis_video_returns_the_masks_it_was_given(davis_clip: Path):
    # OSVOS masks of horsejump-high (854x480, 2 objects) turned into 1/4-resolution logits at the DAVIS geometry
    # (padded 512x896, logits 128x224), stitched with DAVIS's 12/6 schedule over the first 30 frames (4 clips).
    # The chain only smooths the 4x4 pooling, so every frame must come back close to the mask it came from.
    names = sorted((davis_clip / "osvos" / "horsejump-high").glob("*.png"))[:30]
    truth = np.stack([np.array(Image.open(p)) for p in names])               # (50, 480, 854) ids 0..2
    g = ImagesResizer("none").geometry(*truth.shape[1:])
    objects = torch.from_numpy(np.stack([truth == 1, truth == 2], 1)).float()  # (50, 2, 480, 854)
    pooled = F.avg_pool2d(g.pad(objects, 0.0), 4)                              # (50, 2, 128, 224)
    logits = ((pooled - 0.5) * 20).permute(1, 0, 2, 3)                         # (2, 50, 128, 224)

    acc = VosAccumulator(len(names), g)
    frames = []
    for clip in clip_schedule(len(names), 12, 6):
        carried = acc.propagate(clip)
        ids = carried.object_ids if clip.index else [1, 2]
        assert ids == [1, 2] and carried.lost_ids == []
        prediction = ObjectPrediction(logits[None, :, clip.start:clip.stop], logits[None, :1, clip.start:clip.stop])
        frames += acc.add_clip(clip, ObjectClip(prediction, ids))
    frames += list(acc.finish())

    assert [f.frame_index for f in frames] == list(range(len(names)))
    for frame in frames:
        predicted = frame.id_map()
        for object_id in (1, 2):
            inter = np.sum((predicted == object_id) & (truth[frame.frame_index] == object_id))
            union = np.sum((predicted == object_id) | (truth[frame.frame_index] == object_id))
            assert inter / union > 0.9, f"frame {frame.frame_index} object {object_id}: IoU {inter / union:.3f}"
