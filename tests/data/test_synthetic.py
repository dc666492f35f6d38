"""The procedural videos: reproducible, drawn as described, and written in formats that the project's own readers,
benchmark inputs and metrics take (a perfect prediction scores perfectly)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tarvis_fast.config import Config
from tarvis_fast.data.synthetic import (
    CLASSES,
    STUFF_CLASSES,
    THING_CLASSES,
    categories,
    generate_videos,
    write_burst,
    write_davis,
    write_vipseg,
    write_ytvis,
)
from tarvis_fast.datasets import vocabulary
from tarvis_fast.evaluation.__main__ import evaluate
from tarvis_fast.formats import burst, davis, panoptic, ytvis
from tarvis_fast.inference.readers import open_benchmark
from tarvis_fast.tasks import Task

SIZE = (48, 64)


@pytest.fixture(scope="module")
def videos():
    # 8 frames: VIPSeg's VPQ looks at windows of up to 8 frames
    return generate_videos(seed=3, count=4, num_frames=8, size=SIZE, num_objects=(2, 3), visible_at_start=True)


def test_the_classes_are_the_demo_vocabularies_in_the_order_the_drawing_assumes():
    assert STUFF_CLASSES == CLASSES[:3] == ("sky", "wall", "ground")  # stuff regions are drawn as indices 0, 1, 2
    assert THING_CLASSES == CLASSES[3:] == vocabulary("DEMO_VIS").names == ("disc", "box", "triangle")
    assert categories() == vocabulary("DEMO_VPS").categories()


def test_a_seed_gives_the_same_videos_and_the_maps_agree():
    a, b = (generate_videos(seed=11, count=2, num_frames=5, size=SIZE) for _ in range(2))
    assert all(np.array_equal(x.frames, y.frames) and np.array_equal(x.instance, y.instance) for x, y in zip(a, b))
    assert not np.array_equal(a[0].frames, generate_videos(seed=12, count=1, num_frames=5, size=SIZE)[0].frames)
    for video in a:
        things = video.instance > 0
        # every object pixel carries its object's thing class; every other pixel a stuff class
        for object_id, class_index in video.object_classes.items():
            assert CLASSES[class_index] in THING_CLASSES
            assert (video.semantic[video.instance == object_id] == class_index).all()
        assert (video.semantic[~things] < len(CLASSES) - len(THING_CLASSES)).all()
        assert video.frames.dtype == np.uint8 and video.frames.shape == (5, *SIZE, 3)


def test_objects_visible_at_start_are_in_frame_0(videos):
    # crowded frames too, where an object drawn inside frame 0 can be hidden behind the ones drawn after it
    crowded = generate_videos(seed=0, count=30, num_frames=12, size=(32, 32), num_objects=(3, 3), visible_at_start=True)
    for video in [*videos, *crowded]:
        assert set(video.object_classes) == set(np.unique(video.instance[0]).tolist()) - {0}


def test_ytvis_json_reads_back_and_a_perfect_prediction_scores_1(videos, tmp_path):
    path = write_ytvis(tmp_path / "ytvis", videos, "valid")
    gt = ytvis.read_ground_truth(path)
    assert len(gt.videos) == 4 and gt.category_ids == [1, 2, 3]
    assert len(gt.tracks) == sum(len(v.object_classes) for v in videos)
    assert (tmp_path / "ytvis" / "JPEGImages" / videos[0].name / "00000.jpg").is_file()
    perfect = [ytvis.PredictedTrack(t.video_id, t.category_id, 1.0, t.segmentations) for t in gt.tracks]
    ytvis.write_results(tmp_path / "results.json", perfect)
    assert evaluate("ytvis", tmp_path / "results.json", path)["AP"] == pytest.approx(1.0)


def test_davis_folders_are_a_benchmark_and_score_1_against_themselves(videos, tmp_path):
    root = write_davis(tmp_path / "davis", videos, "val")
    labels = davis.read_label_png(root / "Annotations" / "480p" / videos[1].name / "00003.png")
    assert np.array_equal(labels, videos[1].instance[3])
    shutil.copytree(root / "Annotations" / "480p", tmp_path / "pred")
    assert evaluate("davis", tmp_path / "pred", root)["J&F-Mean"] == pytest.approx(1.0)
    benchmark = open_benchmark("DAVIS", Config(), paths={
        "images": root / "JPEGImages" / "480p", "annotations": root / "Annotations" / "480p",
        "image_set": root / "ImageSets" / "2017" / "val.txt"})
    assert [s.name for s in benchmark.sequences()] == [v.name for v in videos]
    first = benchmark.sequences()[0]
    assert sorted(r.object_id for r in first.references) == sorted(videos[0].object_classes)


def test_davis_refuses_objects_that_enter_later(tmp_path):
    entering = [v for v in generate_videos(seed=0, count=12, num_frames=8, size=SIZE, num_objects=(3, 3))
                if set(v.object_classes) - set(np.unique(v.instance[0]).tolist())]
    assert entering, "the generator lets objects enter the frame"
    with pytest.raises(ValueError, match="not visible in frame 0"):
        write_davis(tmp_path / "davis", entering[:1], "val")


def test_vipseg_layout_is_a_benchmark_and_its_ground_truth_scores_100(videos, tmp_path):
    root = write_vipseg(tmp_path / "vipseg", videos, "val")
    gt = panoptic.read_vipseg_gt(root)
    assert [v.name for v in gt.videos] == [v.name for v in videos]
    segment_ids = panoptic.load_segment_ids(gt.videos[0].frames[2], is_prediction=False)
    assert len(np.unique(segment_ids)) == len(np.unique(videos[0].semantic[2] * 1000 + videos[0].instance[2]))
    writer = panoptic.VipsegPredictionWriter(tmp_path / "pred")
    for seed, video in enumerate(videos):
        writer.add_video(video.name, [f"{n}.png" for n in video.frame_names()],
                         *panoptic.encode_panoptic_video(video.semantic, video.instance, categories(), seed=seed))
    writer.close()
    scores = evaluate("vipseg", tmp_path / "pred", root)
    assert scores["vpq_all"] == pytest.approx(100.0) and scores["STQ"]["STQ"] == pytest.approx(1.0)
    cfg = Config()
    benchmark = open_benchmark("VIPSEG", cfg, paths={"images": root / "images", "annotations": root / "val.json"})
    assert benchmark.task is Task.VPS and benchmark.sequences()[0].frames[0].is_file()


def test_burst_files_are_a_pet_benchmark_with_points_inside_their_masks(videos, tmp_path):
    root = write_burst(tmp_path / "burst", videos, "val", annotate_every=2)
    _, sequences = burst.read_burst_annotations(root / "first_frame_annotations.json")
    for seq, video in zip(sequences, videos):
        for exemplar in seq.exemplars():
            x, y = exemplar.point_xy
            t = seq.all_image_paths.index(exemplar.image_path)
            assert video.instance[t, int(y), int(x)] == exemplar.track_id
    benchmark = open_benchmark("BURST", Config(), paths={
        "images": root / "frames", "annotations": root / "first_frame_annotations.json"})
    assert benchmark.task is Task.PET and len(benchmark.sequences()) == len(videos)
    assert all(frame.is_file() for frame in benchmark.sequences()[0].frames)


def test_burst_ground_truth_scores_100_against_itself(videos, tmp_path):
    root = write_burst(tmp_path / "burst", videos, "val", annotate_every=2)
    first_frame, _ = burst.read_burst_annotations(root / "first_frame_annotations.json")
    masks = {f"SYNTHETIC/{v.name}": {f"{name}.jpg": {i: v.instance[t] == i for i in v.object_classes}
                                     for t, name in enumerate(v.frame_names())} for v in videos}
    burst.write_burst_results(tmp_path / "results.json", first_frame, masks)
    assert evaluate("burst", tmp_path / "results.json", root)["HOTA"]["all"] == pytest.approx(100.0)
