"""DAVIS-2017 J&F against hand-derived values and against the official toolkit on the real horsejump-high masks.

Oracle numbers come from davisvideochallenge/davis2017-evaluation at commit ac7c43f (`DAVISEvaluation(...,
gt_set="val").evaluate(results)`, global numbers as `evaluation_method.py` forms them), run with numpy 2.4.6,
scikit-image 0.26.0 and opencv 5.0.0 on the very files these tests write.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tarvis_fast.evaluation.__main__ import main as cli_main
from tarvis_fast.evaluation.davis import (
    boundary_map,
    boundary_pixels,
    boundary_radius,
    disk_rows,
    evaluate_davis,
    object_statistics,
)
from tarvis_fast.formats.davis import read_annotations, read_label_png, write_label_png, write_results

SEQUENCE = "horsejump-high"


def make_root(root: Path, sequences: dict[str, np.ndarray], *, unsupervised: bool = False) -> Path:
    """A DAVIS-2017 layout with the given ground-truth labels (T, H, W) per sequence; frames are empty
    .jpg files (the toolkit only counts them)."""
    folder = "Annotations_unsupervised" if unsupervised else "Annotations"
    for name, labels in sequences.items():
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        for t in range(len(labels)):
            (root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg").touch()
        write_results(root / folder / "480p", name, [f"{t:05d}" for t in range(len(labels))], labels)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{name}\n" for name in sequences))
    return root


# ---------------------------------------------------------------------------------------------- building blocks

def test_boundary_map_by_hand():
    # 2x2 square at rows 1-2, cols 1-2 of a 6x8 image. A pixel is on the boundary when it differs from its
    # right, lower or lower-right neighbour: (0,0) by its diagonal, (0,1) (0,2) by the pixel below, (1,0)
    # (2,0) by the pixel to the right, (1,2) (2,2) by their right neighbour, (2,1) by the one below.
    square = np.zeros((6, 8), bool)
    square[1:3, 1:3] = True
    expected = {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)}
    assert set(zip(*np.nonzero(boundary_map(square)))) == expected
    # Last row and column: only the right (row) or lower (column) neighbour counts; the corner never.
    corner = np.zeros((3, 3), bool)
    corner[2, 2] = True
    assert set(zip(*np.nonzero(boundary_map(corner)))) == {(1, 1), (1, 2), (2, 1)}
    assert not boundary_map(np.ones((3, 3), bool)).any()
    # Stacked frames are independent.
    np.testing.assert_array_equal(boundary_map(np.stack([square, ~square]))[1], boundary_map(~square))


def test_disk_matches_scikit_image():
    # Half widths of the rows of skimage.morphology.disk(r) (scikit-image 0.26.0), which the toolkit
    # dilates with; 8 is the radius at 480p (854x480), 18 at 1920x1080.
    skimage_rows = {
        1: [0, 1, 0],
        2: [0, 1, 2, 1, 0],
        3: [0, 2, 2, 3, 2, 2, 0],
        8: [0, 3, 5, 6, 6, 7, 7, 7, 8, 7, 7, 7, 6, 6, 5, 3, 0],
        18: [0, 5, 8, 9, 11, 12, 13, 14, 14, 15, 16, 16, 16, 17, 17, 17, 17, 17, 18,
             17, 17, 17, 17, 17, 16, 16, 16, 15, 14, 14, 13, 12, 11, 9, 8, 5, 0],
    }
    for radius, half_widths in skimage_rows.items():
        assert disk_rows(radius) == list(zip(range(-radius, radius + 1), half_widths))
    assert boundary_radius(480, 854) == 8 and boundary_radius(1080, 1920) == 18


def noisy_patch(rng: np.random.Generator, shape: tuple[int, int, int], box: tuple[slice, slice],
                stray_id: bool = False) -> np.ndarray:
    """uint8 (T, H, W): random ids 0..3 inside `box`, 0 outside; with `stray_id`, id 9 (which is not asked
    for) in the bottom-left pixel of frame 0."""
    labels = np.zeros(shape, np.uint8)
    labels[:, box[0], box[1]] = rng.integers(0, 4, labels[:, box[0], box[1]].shape)
    if stray_id:
        labels[0, -1, 0] = 9
    return labels


@pytest.mark.parametrize("box", [(slice(5, 12), slice(8, 20)),  # inside the image
                                 (slice(0, 4), slice(0, 30)),  # touching the top, left and right edges
                                 (slice(14, 20), slice(25, 30)),  # the bottom-right corner
                                 (slice(0, 0), slice(0, 0))])  # empty
def test_boundary_pixels_and_near_counts_match_brute_force(box):
    # boundary_pixels works on the label map's boundary on the ids' bounding box; its pixels for each id must
    # be those of boundary_map of that id's mask on the full frames, and its near counts those of float64
    # squared distances between every query and reference boundary pixel of the same frame.
    rng = np.random.default_rng(1)
    radius, shape = 3, (4, 20, 30)
    query = noisy_patch(rng, shape, box)
    reference = noisy_patch(rng, shape, (slice(3, 17), slice(4, 26)), stray_id=True)
    query_pixels, reference_pixels = boundary_pixels(query, 3, radius), boundary_pixels(reference, 3, radius)
    padded_width = shape[2] + 2 * radius
    for k in (1, 2, 3):
        frame, row, col = np.nonzero(boundary_map(query == k))
        expected_keys = (frame * (shape[1] + 2 * radius) + row + radius) * padded_width + col + radius
        np.testing.assert_array_equal(query_pixels[k - 1].keys, expected_keys)
        for g in (1, 2, 3):
            expected = []
            for q, r in zip(boundary_map(query == k), boundary_map(reference == g)):
                qp, rp = np.argwhere(q).astype(np.float64), np.argwhere(r).astype(np.float64)
                d2 = ((qp[:, None, :] - rp[None, :, :]) ** 2).sum(-1)
                expected.append(int((d2 <= radius**2).any(axis=1).sum()) if len(rp) and len(qp) else 0)
            np.testing.assert_array_equal(query_pixels[k - 1].count_near(reference_pixels[g - 1]), expected)


def test_boundary_map_of_labels_is_the_union_of_the_ids_boundaries():
    labels = noisy_patch(np.random.default_rng(2), (3, 12, 15), (slice(2, 10), slice(1, 15)), stray_id=True)
    union = np.zeros(labels.shape, bool)
    for k in np.unique(labels):
        union |= boundary_map(labels == k)
    np.testing.assert_array_equal(boundary_map(labels), union)


def test_object_statistics_by_hand():
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # T=8: round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7] -> bins x[0:3], x[2:5], x[4:6], x[5:8];
    # decay = mean(.9, .8, .7) - mean(.4, .3, .2) = 0.5. Recall: 4 of 8 values are > 0.5 (0.5 is not).
    mean, recall, decay = object_statistics(x)
    assert mean == pytest.approx(0.55) and recall == 0.5 and decay == pytest.approx(0.5)
    # T=3: edges [0, 1, 1, 2, 2] -> bins x[0:2] and x[2:3].
    assert object_statistics(np.array([1.0, 1 / 3, 0.0]))[2] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------- toy sequences

def toy_ground_truth() -> np.ndarray:
    """5 frames of 6x8 (boundary radius ceil(0.008 * 10) = 1, a plus-shaped disk): object 1 a 2x2 square at
    rows 1-2, cols 1-2; object 2 the pixels (4,5), (4,6); frame 1 has a void pixel at (3,1)."""
    gt = np.zeros((5, 6, 8), np.uint8)
    gt[:, 1:3, 1:3] = 1
    gt[:, 4, 5:7] = 2
    gt[1, 3, 1] = 255
    return gt


def test_semi_supervised_toy_by_hand(tmp_path):
    gt = toy_ground_truth()
    root = make_root(tmp_path / "davis", {"toy": gt})
    pred = np.zeros_like(gt)
    pred[1, 1:3, 1:3] = 1
    pred[1, 3, 1] = 1  # on the void pixel, which counts as background in this task
    pred[2, 1:3, 2:4] = 1  # shifted one pixel right
    # frame 3: object 1 missing; object 2 never predicted (zero-padded). Frames 0 and 4 are not written:
    # the first and last frame are not evaluated.
    write_results(tmp_path / "res", "toy", ["00001", "00002", "00003"], pred[1:4])
    # Object 1, frames 1-3:
    #   J: 4/5 (extra void pixel), 2/6, 0 (union 4).
    #   F frame 1: the result boundary is the 8 square boundary pixels plus (3,0), (3,1), each next to a
    #     ground-truth boundary pixel -> P = 10/10, R = 8/8, F = 1. Frame 2: every shifted boundary pixel is
    #     within one step of the other boundary -> F = 1. Frame 3: no result boundary -> P = 1, R = 0, F = 0.
    #   J: mean 17/45, recall 1/3, decay mean(4/5, 1/3) - 0 = 17/30; F: mean 2/3, recall 2/3, decay 1.
    # Object 2: J = F = 0 in every frame. (The official toolkit gives the same numbers on these files.)
    stats = evaluate_davis(tmp_path / "res", root, workers=1)
    expected = {"J-Mean": 17 / 90, "J-Recall": 1 / 6, "J-Decay": 17 / 60,
                "F-Mean": 1 / 3, "F-Recall": 1 / 3, "F-Decay": 1 / 2, "J&F-Mean": 47 / 180}
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value, abs=1e-12), name
    assert stats["per_sequence"] == {"toy_1": {"J-Mean": pytest.approx(17 / 45), "F-Mean": pytest.approx(2 / 3)},
                                     "toy_2": {"J-Mean": 0.0, "F-Mean": 0.0}}


def test_unsupervised_toy_by_hand(tmp_path):
    gt = toy_ground_truth()
    root = make_root(tmp_path / "davis", {"toy": gt}, unsupervised=True)
    pred = np.zeros_like(gt)
    pred[gt == 1] = 2  # result ids swapped relative to the ground truth
    pred[gt == 2] = 1
    pred[1, 3, 1] = 2  # on the void pixel, which is ignored in this task
    pred[:, 5, 0] = 3  # a third proposal that matches nothing
    write_results(tmp_path / "res", "toy", [f"{t:05d}" for t in range(5)], pred)
    # Hungarian on (J + F) / 2 pairs result 1 with object 2 and result 2 with object 1, both perfect in
    # every frame (all 5 frames count): every mean and recall is 1, every decay 0 (as the toolkit says).
    stats = evaluate_davis(tmp_path / "res", root, workers=1, task="unsupervised")
    for name in ("J&F-Mean", "J-Mean", "J-Recall", "F-Mean", "F-Recall"):
        assert stats[name] == 1.0, name
    assert stats["J-Decay"] == 0.0 and stats["F-Decay"] == 0.0
    assert set(stats["per_sequence"]) == {"toy_1", "toy_2"}


def test_parallel_equals_serial_and_cli(tmp_path):
    gt = toy_ground_truth()
    other = np.roll(gt, 2, axis=2)
    root = make_root(tmp_path / "davis", {"toy": gt, "toy-shifted": other})
    names = [f"{t:05d}" for t in range(5)]
    write_results(tmp_path / "res", "toy", names, np.roll(gt, 1, axis=1) % 255)
    write_results(tmp_path / "res", "toy-shifted", names, gt % 255)
    serial = evaluate_davis(tmp_path / "res", root, workers=1)
    assert evaluate_davis(tmp_path / "res", root, workers=2) == serial
    assert list(serial["per_sequence"]) == ["toy_1", "toy_2", "toy-shifted_1", "toy-shifted_2"]
    assert cli_main(["davis", "--pred", str(tmp_path / "res"), "--gt", str(root), "--json", str(tmp_path / "out.json"),
                     "--workers", "1"]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == serial


def test_malformed_results_are_named(tmp_path):
    gt = toy_ground_truth()
    root = make_root(tmp_path / "davis", {"toy": gt})
    names = ["00001", "00002", "00003"]
    write_results(tmp_path / "res", "toy", names, np.zeros((3, 6, 8), np.uint8))
    frame = tmp_path / "res" / "toy" / "00002.png"

    write_label_png(frame, np.full((6, 8), 3, np.uint8))  # only objects 1 and 2 exist
    with pytest.raises(ValueError, match=r"toy/00002\.png: holds object id 3, but at most 2"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    write_label_png(frame, np.zeros((6, 9), np.uint8))
    with pytest.raises(ValueError, match=r"toy/00002\.png: size \(H, W\) = \(6, 9\), expected \(6, 8\)"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(frame)
    with pytest.raises(ValueError, match=r"toy/00002\.png: expected an indexed .* got mode RGB"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    frame.unlink()
    with pytest.raises(FileNotFoundError, match=r"toy/00002\.png: label PNG not found"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    with pytest.raises(FileNotFoundError, match="no results for sequence toy"):
        evaluate_davis(tmp_path / "nothing", root, workers=1)


def test_bad_ground_truth_is_named(tmp_path):
    root = make_root(tmp_path / "davis", {"short": toy_ground_truth()[:2]})
    with pytest.raises(ValueError, match="sequence short: 2 frames"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    (root / "JPEGImages" / "480p" / "short" / "00002.jpg").touch()
    with pytest.raises(ValueError, match="2 annotation PNGs for 3 frames"):
        evaluate_davis(tmp_path / "res", root, workers=1)
    with pytest.raises(FileNotFoundError, match="DAVIS sequence list not found"):
        evaluate_davis(tmp_path / "res", tmp_path, workers=1)


# ---------------------------------------------------------------------------------------------- real masks

def perturb(osvos: np.ndarray) -> np.ndarray:
    """A degraded copy of the OSVOS masks (T, H, W): object 1 moved 4 px right, object 2 lost in frames
    10-14, the ids swapped in frame 30, a spurious 40x40 block of object 2 in frame 40."""
    pred = osvos.copy()
    moved = np.roll(osvos == 1, 4, axis=2)
    pred[osvos == 1] = 0
    pred[moved] = 1
    pred[10:15][pred[10:15] == 2] = 0
    pred[30] = np.choose(pred[30], [0, 2, 1])
    pred[40, :40, :40] = 2
    return pred


@pytest.fixture(scope="module")
def real_root(davis_clip, tmp_path_factory):
    """DAVIS root with OSVOS as ground truth, plus a void stripe (rows 200-204) in every frame; the
    same labels serve as semi-supervised and unsupervised annotations."""
    source = davis_clip / "osvos"
    names = sorted(p.stem for p in (source / SEQUENCE).glob("*.png"))
    osvos = np.stack([read_label_png(source / SEQUENCE / f"{n}.png") for n in names])
    gt = osvos.copy()
    gt[:, 200:205] = 255
    base = tmp_path_factory.mktemp("davis_real")
    root = base / "davis"
    (root / "JPEGImages" / "480p").mkdir(parents=True)
    (root / "JPEGImages" / "480p" / SEQUENCE).symlink_to(davis_clip / "JPEGImages" / SEQUENCE)
    write_results(root / "Annotations" / "480p", SEQUENCE, names, gt)
    (root / "Annotations_unsupervised").mkdir()
    (root / "Annotations_unsupervised" / "480p").symlink_to(root / "Annotations" / "480p")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(SEQUENCE + "\n")
    write_results(base / "perturbed", SEQUENCE, names, perturb(osvos))
    assert read_annotations(root, SEQUENCE)[1].shape == (50, 480, 854)
    return root, base / "perturbed"


def assert_matches_oracle(stats: dict, oracle: dict) -> None:
    for name, value in oracle.items():
        if name == "per_sequence":
            assert stats[name].keys() == value.keys()
            for obj, row in value.items():
                assert stats[name][obj] == pytest.approx(row, abs=1e-9), obj
        else:
            assert stats[name] == pytest.approx(value, abs=1e-9), name


def test_real_perturbed_osvos_semi_supervised(real_root):
    root, perturbed = real_root
    oracle = {"J&F-Mean": 0.8577256022009897, "J-Mean": 0.8004317692764609, "J-Recall": 0.9270833333333333,
              "J-Decay": -0.12332094619968392, "F-Mean": 0.9150194351255185, "F-Recall": 0.9270833333333333,
              "F-Decay": -0.1691621549725506,
              "per_sequence": {"horsejump-high_1": {"J-Mean": 0.7718404196388993, "F-Mean": 0.9516921407987935},
                               "horsejump-high_2": {"J-Mean": 0.8290231189140224, "F-Mean": 0.8783467294522437}}}
    assert_matches_oracle(evaluate_davis(perturbed, root, workers=1), oracle)


def test_real_rvos_unsupervised(real_root, davis_clip):
    root, _ = real_root
    oracle = {"J&F-Mean": 0.4650702942130278, "J-Mean": 0.3374980585799559, "J-Recall": 0.48,
              "J-Decay": 0.04893873077047446, "F-Mean": 0.5926425298460998, "F-Recall": 0.65,
              "F-Decay": 0.08443513658173274,
              "per_sequence": {"horsejump-high_1": {"J-Mean": 0.6129199606446405, "F-Mean": 0.7678632008488385},
                               "horsejump-high_2": {"J-Mean": 0.06207615651527128, "F-Mean": 0.417421858843361}}}
    assert_matches_oracle(evaluate_davis(davis_clip / "rvos", root, workers=1, task="unsupervised"), oracle)


def test_real_rvos_is_rejected_in_semi_supervised_task(real_root, davis_clip):
    # RVOS is an unsupervised result with up to 20 ids; the toolkit stops at the first frame read (00001).
    root, _ = real_root
    with pytest.raises(ValueError, match=r"rvos/horsejump-high/00001\.png: holds object id 20, but at most 2"):
        evaluate_davis(davis_clip / "rvos", root, workers=1)
