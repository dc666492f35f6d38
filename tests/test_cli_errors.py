"""Every command line's bad inputs end in exit code 2 and one line naming the path or flag, with no traceback
(`tarvis_fast/cli_errors.py`), and infer.py finds them before it loads the model.

The table runs each command line in-process through its `main(argv)`; two subprocess runs prove the real entry
points and --debug. Inputs are small synthetic files: a 6-frame JPEG folder, a DAVIS-2017 layout cut from it,
and the small ResNet checkpoint of `helpers.checkpoint`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers.checkpoint import save_small_checkpoint
from helpers.videos import HEIGHT, NUM_FRAMES, WIDTH, first_frame_ids, write_jpeg_folder

from tarvis_fast import config as config_cli
from tarvis_fast.evaluation import __main__ as evaluation_cli
from tarvis_fast.formats.davis import write_label_png
from tarvis_fast.formats.kitti_step import write_kitti_step_png
from tarvis_fast.inference import cli as infer_cli
from tarvis_fast.inference.video import RUN_JSON

REPO = Path(__file__).resolve().parents[1]
H, W = HEIGHT, WIDTH


@dataclass
class Inputs:
    """The files the bad inputs are made of (good ones, and broken copies of them)."""

    root: Path
    checkpoint: Path
    frames: Path        # a folder of NUM_FRAMES JPEG frames
    mask: Path          # a frame-0 id map with objects 1 and 2
    davis: Path         # a DAVIS-2017 root: JPEGImages/480p, Annotations/480p, ImageSets/2017/val.txt
    out: Path           # an output folder that does not exist yet

    def path(self, name: str) -> Path:
        return self.root / name


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def _truncated(source: Path, target: Path) -> Path:
    return _write(target, source.read_bytes()[: source.stat().st_size // 2])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    checkpoint = save_small_checkpoint(_mkdir(root / "ckpt"))
    frames = write_jpeg_folder(root / "frames")
    davis = root / "davis"
    write_jpeg_folder(davis / "JPEGImages" / "480p" / "seq")
    for t in range(NUM_FRAMES):
        write_label_png(_mkdir(davis / "Annotations" / "480p" / "seq") / f"{t:05d}.png", first_frame_ids())
    _write(davis / "ImageSets" / "2017" / "val.txt", "seq\n")
    mask = root / "first.png"
    write_label_png(mask, first_frame_ids())
    return Inputs(root, checkpoint, frames, mask, davis, root / "out")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------- the table

@dataclass
class Case:
    """One bad input: `argv(inputs)` for `cli`; the one-line message must contain `names`."""

    id: str
    cli: str                                   # "infer" | "evaluation" | "config"
    argv: Callable[[Inputs], list[str]]
    names: str | Callable[[Inputs], str]


def _checkpoint_variant(inputs: Inputs, name: str, pth: bytes | None = None, config: str | None = None) -> Path:
    """A copy of the checkpoint folder with its .pth or config.yaml replaced."""
    folder = _mkdir(inputs.root / name)
    _write(folder / "model.pth", pth if pth is not None else inputs.checkpoint.read_bytes())
    if config is not None or (inputs.checkpoint.parent / "config.yaml").exists():
        _write(folder / "config.yaml", config if config is not None else
               (inputs.checkpoint.parent / "config.yaml").read_text())
    return folder / "model.pth"


def video(inputs: Inputs, *extra: str, checkpoint: Path | None = None, out: Path | None = None) -> list[str]:
    """infer.py on the synthetic frames: vos with the good mask, unless `extra` gives --task or --masks."""
    prompt = [] if "--task" in extra else ["--task", "vos", *([] if "--masks" in extra else ["--masks", str(inputs.mask)])]
    source = [] if "--video" in extra else ["--video", str(inputs.frames)]
    return [str(checkpoint or inputs.checkpoint), *source, *prompt, "--output_dir", str(out or inputs.out), *extra]


def davis(inputs: Inputs, *extra: str) -> list[str]:
    """infer.py on the synthetic DAVIS root, with each path flag unless `extra` gives it."""
    paths = {"--images": inputs.davis / "JPEGImages" / "480p", "--annotations": inputs.davis / "Annotations" / "480p",
             "--image_set": inputs.davis / "ImageSets" / "2017" / "val.txt"}
    given = [arg for flag, path in paths.items() if flag not in extra for arg in (flag, str(path))]
    return [str(inputs.checkpoint), "--dataset", "DAVIS", "--output_dir", str(inputs.out), *given, *extra]


def _bad_png(inputs: Inputs, name: str, labels: np.ndarray) -> str:
    path = inputs.path(name)
    write_label_png(path, labels)
    return str(path)


def _rgb_png(inputs: Inputs) -> str:
    path = inputs.path("rgb.png")
    cv2.imwrite(str(path), np.zeros((H, W, 3), np.uint8))
    return str(path)


def _other_run(inputs: Inputs, name: str, record: dict | None) -> Path:
    """An output folder holding results: with a run record, or without one."""
    folder = _mkdir(inputs.path(name) / "masks")
    _write(folder / "00000.png", b"stale")
    if record is not None:
        _write(folder.parent / RUN_JSON, json.dumps(record))
    return folder.parent


def _davis_copy(inputs: Inputs, name: str, frame: str, break_it: Callable[[Path], None]) -> Path:
    """A copy of the DAVIS root's annotation folder (as predictions or ground truth), `break_it` applied to one
    frame's PNG."""
    root = inputs.path(name)
    for png in (inputs.davis / "Annotations" / "480p" / "seq").glob("*.png"):
        _write(root / "seq" / png.name, png.read_bytes())
    break_it(root / "seq" / frame)
    return root


def _json_file(inputs: Inputs, name: str, content: str) -> str:
    return str(_write(inputs.path(name), content))


YTVIS_GT = json.dumps({"videos": [{"id": 1, "width": 8, "height": 8, "length": 1, "file_names": ["v/0.jpg"]}],
                       "categories": [{"id": 1, "name": "thing"}], "annotations": []})
_tiny = np.zeros((H // 2, W // 2), np.uint8)
_tiny[2:6, 2:6] = 1

CASES = [
    # ---- infer: the checkpoint and its config
    Case("ckpt-missing", "infer", lambda i: video(i, checkpoint=i.path("none.pth")), "none.pth: checkpoint not found"),
    Case("ckpt-folder", "infer", lambda i: video(i, checkpoint=i.frames), "is not a file"),
    Case("ckpt-empty", "infer", lambda i: video(i, checkpoint=_checkpoint_variant(i, "empty", b"")), "is empty"),
    Case("ckpt-truncated", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "cut", i.checkpoint.read_bytes()[:5000])),
         "truncated or corrupt checkpoint"),
    Case("ckpt-random-bytes", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "random", bytes(range(256)) * 8)),
         "not a PyTorch checkpoint"),
    Case("ckpt-zip-not-torch", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "zip", _zip_bytes())), "no data.pkl"),
    Case("config-missing", "infer",
         lambda i: video(i, checkpoint=_no_config(i)), "noconfig/config.yaml: config file not found"),
    Case("config-empty", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "emptycfg", config="")), "config is empty"),
    Case("config-bad-yaml", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "badyaml", config="model: [")), "not valid YAML"),
    Case("config-unknown-key", "infer",
         lambda i: video(i, checkpoint=_checkpoint_variant(i, "unknown", config="model:\n  nope: 1\n")),
         "unknown key 'model.nope'"),
    Case("cfg-override-unknown", "infer", lambda i: video(i, "--cfg.model.nope", "1"), "unknown key 'model.nope'"),
    Case("cfg-override-no-value", "infer", lambda i: video(i, "--cfg.model.hidden_dim"), "--cfg.model.hidden_dim"),
    # ---- infer: common flags
    Case("output-dir-is-file", "infer", lambda i: video(i, out=i.mask), "--output_dir"),
    Case("output-dir-under-file", "infer", lambda i: video(i, out=i.mask / "sub"), "is not a folder"),
    Case("device-spelling", "infer", lambda i: video(i, "--device", "gpu"), "--device gpu"),
    Case("clip-length-zero", "infer", lambda i: video(i, "--clip_length", "0"), "--clip_length"),
    Case("frame-overlap-negative", "infer", lambda i: video(i, "--frame_overlap", "-1"), "--frame_overlap"),
    Case("overlap-not-below-clip", "infer", lambda i: video(i, "--clip_length", "4", "--frame_overlap", "4"),
         "--clip_length 4 --frame_overlap 4"),
    Case("overlap-over-half-clip", "infer", lambda i: video(i, "--clip_length", "4", "--frame_overlap", "3"),
         "at most half a clip"),
    Case("vos-without-overlap", "infer", lambda i: davis(i, "--frame_overlap", "0"), "overlap must be at least 1"),
    Case("min-dim-and-disable-resize", "infer", lambda i: video(i, "--min_dim", "64", "--disable_resize"),
         "--disable_resize"),
    Case("dataset-unknown", "infer", lambda i: davis(i, "--dataset", "DAVIS19"), "--dataset"),
    Case("no-source", "infer", lambda i: [str(i.checkpoint), "--output_dir", str(i.out)], "--dataset"),
    # ---- infer: benchmarks
    Case("images-missing", "infer", lambda i: davis(i, "--images", str(i.path("nowhere"))), "--images"),
    Case("image-set-missing", "infer", lambda i: davis(i, "--image_set", str(i.path("val.txt"))), "val.txt"),
    Case("split-unknown", "infer", lambda i: davis(i, "--split", "nope"), "split 'nope'"),
    Case("seq-names-unknown", "infer", lambda i: davis(i, "--seq_names", "bear"), "--seq_names"),
    Case("seq-split-range", "infer", lambda i: davis(i, "--seq_split", "3/2"), "--seq_split"),
    Case("seq-split-spelling", "infer", lambda i: davis(i, "--seq_split", "half"), "--seq_split"),
    Case("workspace-missing", "infer",
         lambda i: [str(i.checkpoint), "--dataset", "DAVIS", "--output_dir", str(i.out), "--workspace",
                    str(i.path("no-workspace"))], "no-workspace"),
    Case("video-flag-on-benchmark", "infer", lambda i: davis(i, "--task", "vos"), "--task"),
    Case("benchmark-truncated-annotation", "infer",
         lambda i: davis(i, "--annotations", str(_davis_copy(i, "cut-annotations", "00000.png", _cut))),
         "00000.png"),
    # ---- infer: your video
    Case("video-missing", "infer", lambda i: video(i, "--video", str(i.path("none.mp4"))), "none.mp4"),
    Case("video-empty-folder", "infer", lambda i: video(i, "--video", str(_mkdir(i.path("no-frames")))),
         "no-frames"),
    Case("video-not-a-video", "infer", lambda i: video(i, "--video", _json_file(i, "clip.mp4", "text")), "clip.mp4"),
    Case("video-without-task", "infer", lambda i: [str(i.checkpoint), "--video", str(i.frames), "--output_dir",
                                                   str(i.out)], "--task"),
    Case("vis-without-vocabulary", "infer", lambda i: video(i, "--task", "vis"), "--vocabulary"),
    Case("vis-with-vps-vocabulary", "infer", lambda i: video(i, "--task", "vis", "--vocabulary", "kitti_step"),
         "--vocabulary kitti_step"),
    Case("vocabulary-not-in-model", "infer", lambda i: video(i, "--task", "vps", "--vocabulary", "vipseg"),
         "no semantic queries for VIPSEG"),
    Case("masks-missing", "infer", lambda i: video(i, "--masks", str(i.path("none.png"))), "none.png"),
    Case("masks-not-png", "infer", lambda i: video(i, "--masks", _json_file(i, "mask.png", "text")), "mask.png"),
    Case("masks-truncated", "infer", lambda i: video(i, "--masks", str(_truncated(i.mask, i.path("cut.png")))),
         "cut.png"),
    Case("masks-rgb", "infer", lambda i: video(i, "--masks", _rgb_png(i)), "rgb.png"),
    Case("masks-wrong-size", "infer", lambda i: video(i, "--masks", _bad_png(i, "small.png", _tiny)), "small.png"),
    Case("masks-empty", "infer", lambda i: video(i, "--masks", _bad_png(i, "zeros.png", np.zeros((H, W)))),
         "zeros.png"),
    Case("masks-only-void", "infer", lambda i: video(i, "--masks", _bad_png(i, "void.png", np.full((H, W), 255))),
         "void.png"),
    Case("masks-pairs-without-frame", "infer", lambda i: video(i, "--masks", f"0:{i.mask},{i.mask}"), "--masks"),
    Case("masks-frame-out-of-video", "infer", lambda i: video(i, "--masks", f"9:{i.mask}"), "frame 9"),
    Case("points-not-numbers", "infer", lambda i: video(i, "--task", "pet", "--points", "a,b"), "--points"),
    Case("points-negative", "infer", lambda i: video(i, "--task", "pet", "--points", "-5,10"), "--points"),
    Case("points-negative-equals", "infer", lambda i: video(i, "--task", "pet", "--points=-5,10"), "--points"),
    Case("points-outside", "infer", lambda i: video(i, "--task", "pet", "--points", f"{W},3"), "outside the frame"),
    Case("points-json-missing", "infer", lambda i: video(i, "--task", "pet", "--points", str(i.path("p.json"))),
         "p.json"),
    Case("points-json-invalid", "infer",
         lambda i: video(i, "--task", "pet", "--points", _json_file(i, "bad.json", "[{")), "bad.json"),
    Case("points-json-fields", "infer",
         lambda i: video(i, "--task", "pet", "--points", _json_file(i, "keys.json", '[{"x": 1}]')), "keys.json"),
    Case("points-json-frame", "infer",
         lambda i: video(i, "--task", "pet", "--points", _json_file(i, "late.json", '[{"frame": 6, "x": 1, "y": 1}]')),
         "frame 6"),
    Case("eval-on-video", "infer", lambda i: video(i, "--eval"), "--eval"),
    Case("resume-and-overwrite", "infer", lambda i: video(i, "--resume", "--overwrite"), "--overwrite"),
    Case("output-of-another-run", "infer",
         lambda i: video(i, out=_other_run(i, "other-run", {"run": {"video": "x"}, "complete": True})),
         "--overwrite"),
    Case("output-without-record", "infer", lambda i: video(i, out=_other_run(i, "no-record", None)), "run.json"),
    Case("resume-other-run", "infer",
         lambda i: video(i, "--resume", out=_other_run(i, "resume-other", {"run": {"video": "x"}, "complete": False})),
         "--resume"),
    # ---- evaluation
    Case("eval-pred-missing", "evaluation", lambda i: ["davis", "--pred", str(i.path("none")), "--gt", str(i.davis)],
         "--pred"),
    Case("eval-gt-missing", "evaluation", lambda i: ["davis", "--pred", str(i.davis), "--gt", str(i.path("none"))],
         "--gt"),
    Case("eval-json-folder-missing", "evaluation",
         lambda i: ["davis", "--pred", str(i.davis), "--gt", str(i.davis), "--json", str(i.path("no/s.json"))],
         "--json"),
    Case("eval-json-is-folder", "evaluation",
         lambda i: ["davis", "--pred", str(i.davis), "--gt", str(i.davis), "--json", str(i.root)], "--json"),
    Case("eval-workers-zero", "evaluation",
         lambda i: ["davis", "--pred", str(i.davis), "--gt", str(i.davis), "--workers", "0"], "--workers"),
    Case("eval-benchmark-unknown", "evaluation",
         lambda i: ["davis19", "--pred", str(i.davis), "--gt", str(i.davis)], "davis19"),
    Case("eval-davis-truncated-png", "evaluation",
         lambda i: ["davis", "--pred", str(_davis_copy(i, "pred-cut", "00002.png", _cut)), "--gt", str(i.davis)], "00002.png"),
    Case("eval-davis-wrong-size", "evaluation",
         lambda i: ["davis", "--pred", str(_davis_copy(i, "pred-small", "00002.png", lambda p: write_label_png(p, _tiny))),
                    "--gt", str(i.davis)], "00002.png"),
    Case("eval-davis-gt-not-davis", "evaluation",
         lambda i: ["davis", "--pred", str(i.davis), "--gt", str(i.frames)], "ImageSets"),
    Case("eval-ytvis-pred-invalid", "evaluation",
         lambda i: ["ytvis", "--pred", _json_file(i, "results.json", "[{"), "--gt",
                    _json_file(i, "gt.json", YTVIS_GT)], "results.json"),
    Case("eval-ytvis-gt-not-ytvis", "evaluation",
         lambda i: ["ytvis", "--pred", _json_file(i, "r.json", "[]"), "--gt", _json_file(i, "g.json", "[]")],
         "g.json"),
    Case("eval-kitti-step-not-rgb", "evaluation",
         lambda i: ["kitti_step", "--pred", str(_kitti_step(i, "kpred", rgb=False)), "--gt",
                    str(_kitti_step(i, "kgt", rgb=True))], "000000.png"),
    Case("eval-burst-gt-invalid", "evaluation",
         lambda i: ["burst", "--pred", _json_file(i, "b.json", "{}"), "--gt", _json_file(i, "all.json", "{")],
         "all.json"),
    # ---- config
    Case("config-file-missing", "config", lambda i: [str(i.path("none.yaml"))], "none.yaml"),
    Case("config-file-bad-yaml", "config", lambda i: [_json_file(i, "bad.yaml", "model: [")], "bad.yaml"),
    Case("config-file-list", "config", lambda i: [_json_file(i, "list.yaml", "- 1\n")], "list.yaml"),
    Case("config-file-unknown-key", "config", lambda i: [_json_file(i, "k.yaml", "modell: {}\n")], "modell"),
    Case("config-file-wrong-type", "config", lambda i: [_json_file(i, "t.yaml", "model:\n  hidden_dim: x\n")],
         "model.hidden_dim"),
    Case("config-file-is-folder", "config", lambda i: [str(i.root)], lambda i: str(i.root)),
    Case("config-override-no-value", "config", lambda i: ["--cfg.model.hidden_dim"], "--cfg.model.hidden_dim"),
    Case("config-override-bad-type", "config", lambda i: ["--cfg.model.hidden_dim", "[1"], "--cfg.model.hidden_dim"),
]


def _zip_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return buffer.getvalue()


def _no_config(inputs: Inputs) -> Path:
    folder = _mkdir(inputs.path("noconfig"))
    _write(folder / "model.pth", inputs.checkpoint.read_bytes())
    return folder / "model.pth"


def _cut(path: Path) -> None:
    _write(path, path.read_bytes()[: path.stat().st_size // 2])


def _kitti_step(inputs: Inputs, name: str, *, rgb: bool) -> Path:
    folder = _mkdir(inputs.path(name) / "0000")
    if rgb:
        write_kitti_step_png(folder / "000000.png", np.zeros((8, 8), np.int64), np.zeros((8, 8), np.int64))
    else:
        write_label_png(folder / "000000.png", np.zeros((8, 8), np.uint8))
    return folder.parent


MAINS = {"infer": infer_cli.main, "evaluation": evaluation_cli.main, "config": config_cli.main}


def _no_model_load(*args, **kwargs):
    raise AssertionError("the model was loaded before the bad input was found")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_named_line(case: Case, inputs: Inputs, capsys, monkeypatch):
    monkeypatch.setattr("tarvis_fast.model.build.load_model", _no_model_load)
    monkeypatch.delenv("TARVIS_WORKSPACE_DIR", raising=False)
    monkeypatch.delenv("TARVIS_DEBUG", raising=False)
    argv = case.argv(inputs)
    capsys.readouterr()
    assert MAINS[case.cli](argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    names = case.names(inputs) if callable(case.names) else case.names
    assert names in err, err
    if "usage:" not in err:  # argparse's own errors come after its usage lines; ours are one line
        assert err.count("\n") == 1 and err.startswith("error: "), err


def test_cuda_device_without_cuda(inputs: Inputs, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setattr("tarvis_fast.model.build.load_model", _no_model_load)
    assert infer_cli.main(video(inputs, "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: CUDA is not available") and err.count("\n") == 1


def test_enough_bad_inputs_across_the_command_lines():
    counts = {cli: sum(case.cli == cli for case in CASES) for cli in MAINS}
    assert len(CASES) >= 40 and min(counts.values()) >= 5, counts


# ---------------------------------------------------------------------------------------------------- entry points

def test_the_scripts_exit_2_fast_and_debug_shows_the_traceback(inputs: Inputs):
    """infer.py and python -m tarvis_fast.evaluation as a user runs them; a bad checkpoint is found without
    importing torch."""
    bad = _checkpoint_variant(inputs, "script", b"")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TARVIS_DEBUG", None)
    command = [sys.executable, str(REPO / "infer.py"), *video(inputs, checkpoint=bad)]
    plain = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert plain.returncode == 2 and plain.stderr == f"error: {bad}: the checkpoint is empty (0 bytes)\n"
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and debug.stderr.endswith(plain.stderr)
    script = ("import sys; from tarvis_fast.inference.cli import main; code = main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules; sys.exit(code)")
    no_torch = subprocess.run(
        [sys.executable, "-c", script, *video(inputs, checkpoint=bad)],
        capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert no_torch.returncode == 2, no_torch.stderr
    evaluation = subprocess.run([sys.executable, "-m", "tarvis_fast.evaluation", "davis", "--pred",
                                 str(inputs.path("none")), "--gt", str(inputs.davis)],
                                capture_output=True, text=True, env={**env, "TARVIS_DEBUG": "1"}, cwd=REPO,
                                check=False)
    assert evaluation.returncode == 2 and "Traceback" in evaluation.stderr and "error: --pred" in evaluation.stderr
