"""Clip schedule, resize sizes and the logits -> original-resolution chain, against hand-derived answers.

A fact used throughout: a block of +L logits in a field of -L at 1/4 resolution, upsampled x4 bilinearly
(align_corners=False), is positive exactly on the 4x-scaled block but for its four corner pixels. Output pixel x
samples source coordinate (x + 0.5) / 4 - 0.5, so between a negative cell a-1 and a positive cell a the value
crosses 0 at source a - 0.5, i.e. between pixels 4a - 1 and 4a; at a corner pixel the positive cell's weight is
0.625 * 0.625 < 1/2, so the corner is negative.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tarvis_fast.inference.clips import (
    Clip,
    FrameGeometry,
    ImagesResizer,
    argmax_at_original,
    clip_schedule,
    masks_at_original,
    padded_size,
)
from tarvis_fast.resize import min_dim_size


def spans(clips):
    return [(c.start, c.stop, c.num_overlap) for c in clips]


# ------------------------------------------------------------------------------------------------ schedule

@pytest.mark.parametrize("num_frames, clip_length, overlap, first_frame, expected", [
    # range(0, 30, 6) truncated at 30; the clip reaching frame 29 ends the schedule
    (30, 12, 6, 0, [(0, 12, 0), (6, 18, 6), (12, 24, 6), (18, 30, 6)]),
    (24, 12, 6, 0, [(0, 12, 0), (6, 18, 6), (12, 24, 6)]),      # no clip starts at 18: 12..23 reached the end
    (13, 12, 6, 0, [(0, 12, 0), (6, 13, 6)]),                   # the last clip is cut at L
    (5, 12, 6, 0, [(0, 5, 0)]),                                  # shorter than one clip
    (1, 12, 6, 0, [(0, 1, 0)]),                                  # a single frame
    (20, 12, 6, 3, [(3, 15, 0), (9, 20, 6)]),                   # BURST: starts at the first reference
    (7, 3, 0, 0, [(0, 3, 0), (3, 6, 0), (6, 7, 0)]),            # no overlap
    (10, 8, 4, 0, [(0, 8, 0), (4, 10, 4)]),                     # BURST's 8/4
])
def test_clip_schedule(num_frames, clip_length, overlap, first_frame, expected):
    clips = clip_schedule(num_frames, clip_length, overlap, first_frame)
    assert spans(clips) == expected
    assert [c.index for c in clips] == list(range(len(clips)))
    assert [(c.frames, len(c)) for c in clips] == [(range(a, b), b - a) for a, b, _ in expected]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_frames=0, clip_length=12, overlap=6), "num_frames"),
    (dict(num_frames=10, clip_length=0, overlap=0), "clip_length"),
    (dict(num_frames=10, clip_length=6, overlap=6), "overlap"),
    (dict(num_frames=10, clip_length=8, overlap=5), "three clips"),
    (dict(num_frames=10, clip_length=8, overlap=4, first_frame=10), "first_frame"),
])
def test_clip_schedule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        clip_schedule(**kwargs)


# ------------------------------------------------------------------------------------------------ sizes

def test_min_dim_resize_sizes_and_rounding():
    # SPEC §2 worked trace: 720x1280 YouTube-VIS frame, min_dim 448 -> 448x796 (796.44 rounds down), pad 448x832
    assert min_dim_size(720, 1280, 448, 1333) == (448, 796)
    assert padded_size(448, 796) == (448, 832)
    # the cap: 100x1000 at min_dim 448 would be 4480 wide -> longer side 1333, 133.3 -> 133
    assert min_dim_size(100, 1000, 448, 1333) == (133, 1333)
    # Python round() is half-to-even: 5 * 0.5 = 2.5 -> 2, 7 * 0.5 = 3.5 -> 4
    assert min_dim_size(4, 5, 2, 100) == (2, 2)
    assert min_dim_size(4, 7, 2, 100) == (2, 4)
    # portrait video: the width is the shorter side
    assert min_dim_size(1280, 720, 576, 1333) == (1024, 576)


def test_resizer_modes_and_geometry():
    g = ImagesResizer("none").geometry(480, 854)
    assert (g.original, g.resized, g.padded, g.logits_size, g.padding) == \
        ((480, 854), (480, 854), (512, 896), (128, 224), (32, 42))
    g = ImagesResizer("min_dim", min_dim=576, max_dim=1333).geometry(360, 640)
    assert (g.resized, g.padded) == ((576, 1024), (576, 1024))
    with pytest.raises(ValueError, match="min_dim"):
        ImagesResizer("min_dim", min_dim=576)
    with pytest.raises(ValueError, match="'min_dim' or 'none'"):
        ImagesResizer("pixel_area")
    with pytest.raises(ValueError, match="multiples of 64"):
        FrameGeometry(original=(10, 10), resized=(10, 10), padded=(10, 64))


# ------------------------------------------------------------------------------------------------ chain

def block_logits(size, r0, r1, c0, c1, level=10.0):
    x = torch.full(size, -level)
    x[r0:r1, c0:c1] = level
    return x


def test_davis_frame_round_trip_puts_square_back():
    # 480x854 -> padded 512x896 -> logits 128x224; logit block rows 30..49, cols 60..99 -> pixels 120..199, 240..399
    g = ImagesResizer("none").geometry(480, 854)
    out = g.logits_to_original(block_logits(g.logits_size, 30, 50, 60, 100))
    assert out.shape == (480, 854)
    expected = np.zeros((480, 854), bool)
    expected[120:200, 240:400] = True
    expected[[120, 120, 199, 199], [240, 399, 240, 399]] = False  # the corners (module docstring)
    np.testing.assert_array_equal((out > 0).numpy(), expected)


def test_round_trip_through_a_resize_halves_the_square():
    # 240x427 at min_dim 480 is resized x2 to 480x854 (pad 512x896). The block lands on padded pixels
    # 80..159 x 200..359; the x1/2 bilinear resize samples padded pixels 2y and 2y+1 equally (source 2y + 0.5),
    # so the square comes back as rows 40..79, cols 100..179, with no partial edge (each missing padded corner
    # is averaged with three positive neighbours: -0.22L + 0.09L + 0.09L + 0.53L > 0).
    g = ImagesResizer("min_dim", min_dim=480, max_dim=1333).geometry(240, 427)
    assert (g.resized, g.padded, g.logits_size) == ((480, 854), (512, 896), (128, 224))
    out = g.logits_to_original(block_logits(g.logits_size, 20, 40, 50, 90)[None])
    expected = np.zeros((1, 240, 427), bool)
    expected[0, 40:80, 100:180] = True
    np.testing.assert_array_equal((out > 0).numpy(), expected)


def test_padding_is_cropped_not_resized_in():
    # positive logits only under the padding (logit rows >= 120 are padded rows >= 480): nothing comes back
    g = ImagesResizer("none").geometry(480, 854)
    logits = torch.full(g.logits_size, -10.0)
    logits[121:, :] = 10.0
    logits[:, 214:] = 10.0  # padded columns >= 856 > 854
    assert not (g.logits_to_original(logits) > 0).any()
    # the x4 upsample alone (VOS propagation) keeps the padded size and the padding's content
    assert (g.logits_to_padded(logits) > 0)[484:, :].all()


def reference_chain(logits: torch.Tensor, g: FrameGeometry) -> torch.Tensor:
    """SPEC §6 written out in float64: x4 bilinear, crop, bilinear to the frame size."""
    x = F.interpolate(logits.double(), scale_factor=4.0, mode="bilinear", align_corners=False)
    x = x[..., : g.resized[0], : g.resized[1]]
    return F.interpolate(x, size=g.original, mode="bilinear", align_corners=False)


def test_chunked_masks_and_argmax_match_whole_clip_reference():
    torch.manual_seed(0)
    g = ImagesResizer("min_dim", min_dim=64, max_dim=1333).geometry(50, 75)  # resized 64x96, padded 64x128
    logits = torch.randn(5, 3, *g.logits_size) * 4  # (N, T, h, w)
    reference = reference_chain(logits.permute(1, 0, 2, 3), g)  # (T, N, H, W)
    padded_map = g.padded[0] * g.padded[1]  # the largest map of the chain: a budget of k maps -> chunks of k
    seen = torch.zeros(3, 5, *g.original, dtype=torch.bool)
    for t, rows, masks in masks_at_original(logits, g, max_elements=padded_map):
        assert rows.stop - rows.start == 1
        seen[t, rows] = masks
    np.testing.assert_array_equal(seen.numpy(), (reference > 0).numpy())

    frames = list(argmax_at_original(logits, g, max_elements=2 * padded_map))  # chunks of 2, 2, 1 channels
    assert [t for t, _, _ in frames] == [0, 1, 2]
    for t, best, index in frames:
        np.testing.assert_allclose(best.double().numpy(), reference[t].max(0).values.numpy(), atol=1e-4)
        top2 = reference[t].topk(2, dim=0).values
        clear = (top2[0] - top2[1]) > 1e-4  # away from float32 near-ties
        np.testing.assert_array_equal(index.numpy()[clear.numpy()], reference[t].argmax(0).numpy()[clear.numpy()])


def test_masks_resize_and_pad_into_the_network():
    g = ImagesResizer("min_dim", min_dim=480, max_dim=1333).geometry(240, 427)
    mask = np.zeros((1, 240, 427), bool)
    mask[0, 10:30, 40:90] = True
    # INTER_LINEAR x2 then > 0.5: the edge pixels 2a-1 see 0.25 of the mask, pixels 2a see 0.75 -> exactly doubled
    resized = g.resize_masks(mask)
    expected = np.zeros((1, 480, 854), bool)
    expected[0, 20:60, 80:180] = True
    np.testing.assert_array_equal(resized, expected)
    frames = np.full((2, 240, 427, 3), 7, np.uint8)
    assert g.resize_frames(frames).shape == (2, 480, 854, 3) and (g.resize_frames(frames) == 7).all()
    padded = g.pad(torch.zeros(2, 3, 480, 854), value=128)
    assert padded.shape == (2, 3, 512, 896)
    assert (padded[..., :480, :854] == 0).all()
    assert (padded[..., 480:, :] == 128).all() and (padded[..., 854:] == 128).all()
    with pytest.raises(ValueError, match="masks must be"):
        g.resize_masks(np.zeros((1, 480, 854), bool))
    with pytest.raises(ValueError, match="logit size"):
        g.logits_to_original(torch.zeros(3, 100, 100))


def test_clip_is_a_frame_range():
    clip = Clip(index=1, start=6, stop=18, num_overlap=6)
    assert len(clip) == 12 and clip.frames[:clip.num_overlap] == range(6, 12)
