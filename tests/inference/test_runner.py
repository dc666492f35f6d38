"""The clip loop end to end on a stub network with known answers (stubs.py), and on a tiny random TarViS.

The stub "segments" grey squares, so each scenario states the masks every frame must end with, and what each
network call must have been given (which frames, which objects as masks or points, on which reference frames).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tarvis_fast.config import DatasetInferenceConfig, ImageResizeConfig
from tarvis_fast.formats.rle import decode_rle
from tarvis_fast.inference.accumulate import PanopticFrame, VisTrack
from tarvis_fast.inference.clips import ImagesResizer
from tarvis_fast.inference.propagation import VosFrame
from tarvis_fast.inference.runner import ClipRunner, ClipSettings, VisRequest, VosRequest, VpsRequest
from tarvis_fast.inference.sequences import ObjectReference
from tarvis_fast.model.outputs import ObjectPrediction, TarvisOutput

from helpers.tiny import tiny_model

from .stubs import HEIGHT, WIDTH, StubTracker, centre, make_video, square, square_mask

NO_RESIZE = ImagesResizer("none")
CLIPS_4_2 = ClipSettings(clip_length=4, frame_overlap=2, resizer=NO_RESIZE)  # clips 0-3, 2-5, 4-7, ...


def run_vos(squares, references, settings=CLIPS_4_2, consistent=True):
    frames = make_video(squares)
    stub = StubTracker()
    results = list(ClipRunner(stub, device="cpu").run(frames, len(frames), (HEIGHT, WIDTH),
                                                      VosRequest(references, consistent), settings))
    return stub, results


def check_masks(results: list[VosFrame], expected: dict[int, list]) -> None:
    """expected: object id -> its square's cell per frame (None: no mask in that frame)."""
    check_mask_arrays(results, {i: [None if cell is None else square_mask(cell) for cell in cells]
                                for i, cells in expected.items()})


def check_mask_arrays(results: list[VosFrame], expected: dict[int, list]) -> None:
    """expected: object id -> its (H, W) bool mask per frame (None: no mask in that frame)."""
    assert [r.frame_index for r in results] == list(range(len(results)))
    for frame in results:
        present = {i for i, mask in frame.masks.items() if mask.any()}
        wanted = {i for i, masks in expected.items() if masks[frame.frame_index] is not None}
        assert present == wanted, f"frame {frame.frame_index}: objects {present}, expected {wanted}"
        for object_id in wanted:
            np.testing.assert_array_equal(frame.masks[object_id], expected[object_id][frame.frame_index],
                                          err_msg=f"frame {frame.frame_index}, object {object_id}")


# ---------------------------------------------------------------------------------------------------- VOS

def test_vos_survivors_late_and_lost_objects():
    # 12 frames, clips 0-3, 2-5, 4-7, 6-9, 8-11. Object 1 (grey 40) moves right a cell a frame; object 2 (grey 80)
    # leaves after frame 4, so it is empty on the overlap frames 6, 7 of clip 6-9 and lost; object 3 (grey 160)
    # is in every frame but given only at frame 5, so it has no mask before frame 5.
    n = 12
    squares = {40: [(1, t + 1) for t in range(n)],
               80: [(6, 4) if t <= 4 else None for t in range(n)],
               160: [(8, 10)] * n}
    refs = [ObjectReference(1, 0, square(squares[40][0]), None), ObjectReference(2, 0, square((6, 4)), None),
            ObjectReference(3, 5, square((8, 10)), None)]
    stub, results = run_vos(squares, refs)
    check_masks(results, {1: squares[40], 2: squares[80][:5] + [None] * 7, 3: [None] * 5 + squares[160][5:]})

    # The calls: survivors first, in the previous clip's order, then new objects; the reference frames are the
    # overlap frames and the clip's ground-truth frames. Object 3's reference (frame 5) lies in clips 2-5 and 4-7.
    assert [c.frames for c in stub.calls] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 10, 11]]
    assert [c.mask_objects for c in stub.calls] == [[40, 80], [40, 80, 160], [40, 80, 160], [40, 160], [40, 160]]
    assert [c.mask_frames for c in stub.calls] == [[0], [2, 3, 5], [4, 5], [6, 7], [8, 9]]
    assert all(not c.point_objects for c in stub.calls)


def test_vos_all_lost_skips_clips_and_restarts_at_the_next_reference():
    # Object 1 leaves after frame 3: empty on clip 4-7's overlap (4, 5), lost, and nothing is new there, so clip
    # 4-7 is not run. Object 5 is given at frame 9 (clip 6-9) and tracking restarts without propagation.
    n = 12
    squares = {40: [(1, 1) if t <= 3 else None for t in range(n)], 200: [(6, 8)] * n}
    refs = [ObjectReference(1, 0, square((1, 1)), None), ObjectReference(5, 9, square((6, 8)), None)]
    stub, results = run_vos(squares, refs)
    check_masks(results, {1: squares[40], 5: [None] * 9 + squares[200][9:]})
    assert [c.frames[0] for c in stub.calls] == [0, 2, 6, 8]
    assert [c.mask_objects for c in stub.calls] == [[40], [40], [200], [200]]
    assert [c.mask_frames for c in stub.calls] == [[0], [2, 3], [9], [8, 9]]


def test_vos_starts_at_the_first_reference_and_reads_every_frame_once():
    # References from frame 5 of 10: clips 5-8 and 7-9; frames 0-4 are read, not run, and come out empty.
    squares = {40: [(2, 2)] * 10}
    frames = make_video(squares)
    reads = []

    def stream():
        for t, frame in enumerate(frames):
            reads.append(t)
            yield frame

    stub = StubTracker()
    runner = ClipRunner(stub, device="cpu")
    results = list(runner.run(stream(), 10, (HEIGHT, WIDTH), VosRequest([ObjectReference(1, 5, square((2, 2)), None)],
                                                                     True), CLIPS_4_2))
    check_masks(results, {1: [None] * 5 + [(2, 2)] * 5})
    assert reads == list(range(10))
    assert [c.frames for c in stub.calls] == [[5, 6, 7, 8], [7, 8, 9]]
    assert runner.stats.frames == 10 and runner.stats.clips == 2


@pytest.mark.parametrize("reuse", [True, False], ids=["reuse_points", "points_once"])
def test_pet_points_become_mask_objects_after_their_first_clip(reuse):
    # 8 frames, clips 0-3, 2-5, 4-7. Objects 1, 2 are points on frame 0; object 3 a point on frame 3, which lies
    # in clips 0-3 and 2-5. The stub answers a point object with only the top-left 2x2 cells of its square
    # ("block") and a mask object with its square. Clip 0-3: all three are points (blocks; object 3 suppressed
    # before frame 3). Clip 2-5: all three are survivors, so mask objects (squares); as in the original, object
    # 3's logits before its reference frame are still suppressed there.
    # - reuse (the original): object 3's point makes a point object in clip 2-5 as well; its point row wins the
    #   block, so on frames 3-5 the object is the block, not its mask row's square. Frames 4, 5 are then replaced
    #   by clip 4-7, whose mask object 3 (propagated from the point row's block) answers the square.
    # - once: clip 2-5 has object 3 as a mask object only, and its square replaces the block on frame 3.
    # The references are listed out of frame order; each clip takes them frame by frame, as the original.
    n = 8
    squares = {40: [(1, t + 1) for t in range(n)], 80: [(7, 2)] * n, 160: [(6, 10)] * n}
    refs = [ObjectReference(3, 3, None, centre((6, 10))), ObjectReference(1, 0, None, centre((1, 1))),
            ObjectReference(2, 0, None, centre((7, 2)))]
    frames = make_video(squares)
    stub = StubTracker(point_block=2)
    task = VosRequest(refs, consistent_final_clip=True, reuse_points_on_overlap=reuse)
    results = list(ClipRunner(stub, device="cpu").run(frames, n, (HEIGHT, WIDTH), task, CLIPS_4_2))

    def block(grey, t):
        return square_mask(squares[grey][t], side=2)

    def whole(grey, t):
        return square_mask(squares[grey][t])

    object_3 = [block(160, 3) if reuse else whole(160, 3)] + [whole(160, t) for t in range(4, n)]
    check_mask_arrays(results, {1: [block(40, 0), block(40, 1)] + [whole(40, t) for t in range(2, n)],
                                2: [block(80, 0), block(80, 1)] + [whole(80, t) for t in range(2, n)],
                                3: [None] * 3 + object_3})
    assert [(c.mask_objects, c.point_objects) for c in stub.calls] == [
        ([], [40, 80, 160]), ([40, 80, 160], [160] if reuse else []), ([40, 80, 160], [])]
    assert stub.calls[0].point_frames == [0, 0, 3]
    assert stub.calls[1].point_frames == ([3] if reuse else [])
    assert [c.mask_frames for c in stub.calls[1:]] == [[2, 3], [4, 5]]


def test_vos_default_is_the_original_final_clip_and_warns_on_one_clip_videos():
    squares = {40: [(2, 2)] * 3}
    refs = [ObjectReference(1, 0, square((2, 2)), None)]
    with pytest.warns(UserWarning, match="consistent_final_clip"):
        _, results = run_vos(squares, refs, consistent=False)
    assert [r.masks for r in results] == [{}, {}, {}]  # the quirk: a single clip labels nothing
    _, results = run_vos(squares, refs, consistent=True)
    check_masks(results, {1: squares[40]})


def test_a_reference_too_small_for_the_resize_keeps_one_pixel():
    # 48x64 frames at min_dim 12 -> 12x16 (a quarter): small pixel (i, j) interpolates source pixels 4i + 1 and
    # 4i + 2, so a one-pixel object at (8, 8) vanishes under the resize; it keeps the small pixel that covers it.
    frames = make_video({40: [(2, 2)] * 4})
    dot = np.zeros((HEIGHT, WIDTH), bool)
    dot[8, 8] = True
    model = _ReferenceRecorder()
    list(ClipRunner(model, device="cpu").run(frames, 4, (HEIGHT, WIDTH),
                                             VosRequest([ObjectReference(1, 0, dot, None)], True),
                                             ClipSettings(4, 2, ImagesResizer("min_dim", 12, 100))))
    assert model.masks == [[[2, 2]]]


class _ReferenceRecorder(torch.nn.Module):
    """Records the first object's first reference mask of each call; its logits are empty."""

    def __init__(self):
        super().__init__()
        self.masks = []
        self.eval()

    def forward(self, images, task, *, objects=None, all_layers=True, dataset=None):
        self.masks.append(objects.masks[0, 0, 0].nonzero().tolist())
        logits = torch.full((1, objects.num_objects, images.shape[1], 16, 16), -1.0)  # padded 64x64 / 4
        return TarvisOutput(task, [ObjectPrediction(logits, logits[:, :1])])


# ---------------------------------------------------------------------------------------------------- VIS / VPS

def test_vis_tracks_span_the_clips_with_their_classes():
    # Two squares, one query each, classes 5 and 7 (0-based); a third, less confident query finds nothing and is
    # left out of the top 2. 9 frames, clips 0-3, 2-5, 4-7, 6-8: each square is linked into one track.
    n = 9
    squares = {40: [(1, t + 1) for t in range(n)], 80: [(7, 12 - t) for t in range(n)]}
    stub = StubTracker(queries=[(40, 5, 10.0), (80, 7, 9.0), (250, 3, 1.0)])
    frames = make_video(squares)
    tracks = list(ClipRunner(stub, device="cpu").run(frames, n, (HEIGHT, WIDTH), VisRequest("X", tracks_per_video=2),
                                                     CLIPS_4_2))
    assert all(isinstance(t, VisTrack) for t in tracks) and [t.category_id for t in tracks] == [6, 8]
    for track, grey in zip(tracks, (40, 80)):
        for t, rle in enumerate(track.segmentations):
            np.testing.assert_array_equal(decode_rle(rle), square_mask(squares[grey][t]))
    assert [c.frames for c in stub.calls] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8]]


def test_vps_paints_thing_tracks_over_the_stuff_map():
    # Class 11 is a thing (the query on grey 80); grey 40 is stuff class 3; everything else stuff class 0.
    n = 6
    squares = {40: [(1, 1)] * n, 80: [(6, t + 1) for t in range(n)]}
    stub = StubTracker(queries=[(80, 11, 10.0)], num_classes=19, stuff={40: 3})
    frames = make_video(squares)
    out = list(ClipRunner(stub, device="cpu").run(frames, n, (HEIGHT, WIDTH), VpsRequest("X", thing_classes=(11, 13)),
                                                  CLIPS_4_2))
    assert [f.frame_index for f in out] == list(range(n)) and all(isinstance(f, PanopticFrame) for f in out)
    for t, frame in enumerate(out):
        thing = square_mask(squares[80][t])
        expected = np.where(thing, 11, np.where(square_mask((1, 1)), 3, 0))
        np.testing.assert_array_equal(frame.semantic, expected)
        np.testing.assert_array_equal(frame.instance, np.where(thing, 1, 0))
        assert frame.segments == {1: 11}


# ---------------------------------------------------------------------------------------------------- inputs

def test_bad_input_is_named():
    frames = make_video({40: [(2, 2)] * 4})
    runner = ClipRunner(StubTracker(), device="cpu")
    good = [ObjectReference(1, 0, square((2, 2)), None)]

    def run(frames=frames, num_frames=4, task=VosRequest(good, True)):
        return list(runner.run(frames, num_frames, (HEIGHT, WIDTH), task, CLIPS_4_2, name="clip7"))

    with pytest.raises(ValueError, match="clip7: the video ended after 4 frames, expected 6"):
        run(num_frames=6)
    with pytest.raises(ValueError, match="clip7: the video has more than the 3 frames"):
        run(num_frames=3)
    with pytest.raises(ValueError, match=r"clip7: frame 2 must be a uint8 \(H, W, 3\) = \(48, 64, 3\)"):
        run(frames=frames[:2] + [frames[2][:10]] + frames[3:])
    with pytest.raises(ValueError, match="needs at least one object reference"):
        run(task=VosRequest([]))
    with pytest.raises(ValueError, match="object 1 at frame 9: the video has frames 0..3"):
        run(task=VosRequest([ObjectReference(1, 9, square((2, 2)), None)]))
    with pytest.raises(ValueError, match="object 1 at frame 0: given twice"):
        run(task=VosRequest(good * 2))
    with pytest.raises(ValueError, match="object 2 at frame 0: mask is empty"):
        run(task=VosRequest([ObjectReference(2, 0, square(None), None)]))
    with pytest.raises(ValueError, match=r"object 3 at frame 0: mask is \(4, 4\)"):
        run(task=VosRequest([ObjectReference(3, 0, np.ones((4, 4), bool), None)]))
    with pytest.raises(ValueError, match=r"point \(y, x\) = \(48.0, 3.0\) lies outside the 48x64 frame"):
        run(task=VosRequest([ObjectReference(4, 0, None, (48.0, 3.0))]))
    with pytest.raises(ValueError, match="eval mode"):
        ClipRunner(StubTracker().train())


def test_clip_settings_from_config_and_cli_overrides():
    davis = DatasetInferenceConfig(image_resize=ImageResizeConfig(mode="none"))
    burst = DatasetInferenceConfig(clip_length=8, frame_overlap=4,
                                   image_resize=ImageResizeConfig(mode="min_dim", min_dims=[512], max_dim=1333))
    assert ClipSettings.from_config(davis).resizer.mode == "none"
    settings = ClipSettings.from_config(burst)
    assert (settings.clip_length, settings.frame_overlap, settings.resizer.min_dim, settings.resizer.max_dim) == (
        8, 4, 512, 1333)
    settings = ClipSettings.from_config(davis, clip_length=6, frame_overlap=3, min_dim=240)
    assert (settings.clip_length, settings.frame_overlap, settings.resizer.mode, settings.resizer.min_dim,
            settings.resizer.max_dim) == (6, 3, "min_dim", 240, 1333)
    assert ClipSettings.from_config(burst, disable_resize=True).resizer.mode == "none"
    with pytest.raises(ValueError, match="exclude each other"):
        ClipSettings.from_config(burst, min_dim=240, disable_resize=True)
    with pytest.raises(ValueError, match="'crop' is for training"):
        ClipSettings.from_config(DatasetInferenceConfig(image_resize=ImageResizeConfig(mode="crop")))


# ---------------------------------------------------------------------------------------------------- the network

def test_amp_runs_the_network_under_bf16_autocast():
    seen = []

    class AutocastProbe(StubTracker):
        def forward(self, *args, **kwargs):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().forward(*args, **kwargs)

    frames = make_video({40: [(2, 2)] * 4})
    for amp in (True, False):
        runner = ClipRunner(AutocastProbe(queries=[(40, 1, 10.0)]), device="cpu", amp=amp)
        list(runner.run(frames, 4, (HEIGHT, WIDTH), VisRequest("X"), CLIPS_4_2))
    assert [enabled for enabled, _ in seen] == [True, False] and seen[0][1] == torch.bfloat16


@pytest.mark.slow
def test_compiled_once_for_videos_of_different_sizes():
    """The network's blocks are compiled once per block type and padded-size bucket (`tarvis_fast.model.compile`)
    and reused: for the last clip's other frame count, for a video of the same padded size, and after a video of
    another size; results equal the eager model's. The backend only counts graphs and runs them as traced
    (tests/inference/test_compile.py runs Inductor)."""
    torch._dynamo.reset()
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    def video(height, width):
        rng = np.random.default_rng(height)
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(5)]

    settings = ClipSettings(clip_length=3, frame_overlap=1, resizer=NO_RESIZE)  # clips 0-2, 2-4: 3 and 2 frames
    task = VisRequest("YOUTUBE_VIS", tracks_per_video=3)
    compiled = ClipRunner(tiny_model(kernel_backend="torch").eval(), device="cpu", compile=counting_backend)
    eager = ClipRunner(tiny_model(kernel_backend="torch").eval(), device="cpu")
    # The tiny model's regions: the neck's deformable and window layers and the decoder's cross-attention,
    # self-attention and FFN blocks (5 graphs). A new padded size recompiles the neck's two layers, whose token
    # counts are spatial; the decoder's blocks see the frames and tokens as dynamic sizes and are reused.
    expected = {(128, 192): 5, (120, 180): 5, (192, 320): 7}  # 120x180 pads to 128x192: the same bucket
    for size, graph_count in expected.items():
        got = list(compiled.run(video(*size), 5, size, task, settings))
        want = list(eager.run(video(*size), 5, size, task, settings))
        assert [(t.category_id, t.segmentations) for t in got] == [(t.category_id, t.segmentations) for t in want]
        assert [t.score for t in got] == pytest.approx([t.score for t in want], rel=1e-5)
        assert len(graphs) == graph_count, f"compiled {len(graphs)} graphs after the {size} video"
