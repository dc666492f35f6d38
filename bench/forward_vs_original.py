"""Our forward against the original TarViS's, side by side in one process, on every task and both released
backbones (issue 17). Not part of the test suite: it needs the original's code, which is not in this repository.

    .venv/bin/python bench/forward_vs_original.py --original /tmp/oracle/work \
        --original-deps /tmp/oracle/venv/lib/python3.11/site-packages [--threads 1] [--repeats 5]

`--original` is the folder that holds the original's `tarvis` package (Ali2500/TarViS); `--original-deps` a
site-packages folder appended to sys.path for what it imports and this venv lacks (einops). When the original
does not import, the script says why and exits with status 0 (skipped).

How the original runs here: its `TarvisInferenceModel` (modelling and inference code as published) on CPU, with
stand-ins written to the libraries' documented behaviour for the detectron2 / fvcore / timm pieces it imports
(the same ones `tests/model/test_original_parity.py` describes), the `MultiScaleDeformableAttention` extension
absent so that `MSDeformAttn` takes its pure-PyTorch path, and its config built from ours. Its ResNet-50 is
detectron2's `build_resnet_backbone`, for which `_D2ResNet` below stands in (detectron2's documented layout:
FrozenBatchNorm2d as `F.batch_norm` in eval, STRIDE_IN_1X1 False as the original's resnet50.yaml sets it).

Both models get the same weights (the parity test's `parity_state_dict`, which keeps every mechanism active), run
in float32, eval mode, no autograd, one clip of T frames, and their final-layer outputs are compared (the
largest difference is printed, as a check that the two compute the same thing). Per backbone and task the two
forwards alternate (ours, original, ours, ...), after one untimed warm-up call each; the table gives the median
wall time of each and their ratio (original / ours: above 1 means ours is faster).

Peak memory is PyTorch's MemTracker (`torch.distributed._tools.mem_tracker`): the most bytes that tensors
created during one forward hold at once, the model's weights and the inputs excluded. It counts tensor storage
only (no allocator slack, no Python objects), the same way for both models.

Tasks: VIS (YOUTUBE_VIS), VPS (KITTI_STEP), VOS (DAVIS: objects from frame-0 masks, 8 queries each in eval) and
PET (BURST: one point per object, in frames 0 and 1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tarvis_fast.config import load_config
from tarvis_fast.model import ObjectReferences, Task, build_model
from tests.model.test_original_parity import parity_state_dict

CONFIG = REPO / "configs" / "finetune_resnet50_swin-tiny.yaml"
TASKS = {"VIS": "YOUTUBE_VIS", "VPS": "KITTI_STEP", "VOS": "DAVIS", "PET": "BURST"}  # task -> dataset
NUM_OBJECTS = 2


# -- the original's imports: stand-ins ---------------------------------------------------------------------------

class _CfgNode(dict):
    """detectron2's CfgNode as the original uses it: attribute access, nested nodes, merge_from_file."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        self[name] = value

    def merge_from_file(self, path: str) -> None:
        import yaml

        def merge(node: _CfgNode, values: dict) -> None:
            for key, value in values.items():
                if isinstance(value, dict):
                    merge(node.setdefault(key, _CfgNode()), value)
                else:
                    node[key] = value

        with open(path) as handle:
            merge(self, yaml.safe_load(handle))


class _ShapeSpec:
    def __init__(self, channels=None, height=None, width=None, stride=None) -> None:
        self.channels, self.height, self.width, self.stride = channels, height, width, stride


class _Conv2d(nn.Conv2d):
    """detectron2's Conv2d: convolution, then the optional norm and activation."""

    def __init__(self, *args, norm=None, activation=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm, self.activation = norm, activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class _FrozenBatchNorm2d(nn.Module):
    """detectron2's FrozenBatchNorm2d; without autograd it is `F.batch_norm` in eval mode."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, value in (("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1 - eps)):
            self.register_buffer(name, torch.full((channels,), float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> _Conv2d:
    return _Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, norm=_FrozenBatchNorm2d(cout))


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.shortcut = _conv_bn(cin, cout, 1, stride) if (cin != cout or stride != 1) else None
        self.conv1, self.conv2, self.conv3 = _conv_bn(cin, mid, 1), _conv_bn(mid, mid, 3, stride), _conv_bn(mid, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu_(self.conv2(F.relu_(self.conv1(x)))))
        return F.relu_(out + (self.shortcut(x) if self.shortcut is not None else x))


class _D2ResNet(nn.Module):
    """detectron2's ResNet-50 as the original configures it (keys stem.conv1.*, res2.0.conv1.*, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv1 = _conv_bn(3, 64, 7, 2)
        cin = 64
        for stage, (blocks, mid) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            layers = [_Bottleneck(cin if i == 0 else mid * 4, mid, mid * 4, 2 if (i == 0 and stage) else 1)
                      for i in range(blocks)]
            cin = mid * 4
            self.add_module(f"res{stage + 2}", nn.Sequential(*layers))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = F.max_pool2d(F.relu_(self.stem.conv1(x)), kernel_size=3, stride=2, padding=1)
        out = {}
        for name in ("res2", "res3", "res4", "res5"):
            x = out[name] = getattr(self, name)(x)
        return out


class _DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return x  # eval mode: the identity


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], leaf, module)
    return module


def _install_stand_ins(cfg) -> None:
    class Checkpointer:
        def __init__(self, model) -> None:
            import logging
            self.logger = logging.getLogger("stand-in checkpointer")

        def resume_or_load(self, *args, **kwargs) -> None:  # random weights are loaded later
            return None

    class Registry:
        def register(self):
            return lambda cls: cls

    class D2Backbone(nn.Module):
        pass

    def c2_xavier_fill(module: nn.Module) -> None:
        nn.init.kaiming_uniform_(module.weight, a=1)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

    _module("detectron2")
    _module("detectron2.checkpoint", DetectionCheckpointer=Checkpointer)
    _module("detectron2.config", CfgNode=_CfgNode)
    _module("detectron2.layers", ShapeSpec=_ShapeSpec, Conv2d=_Conv2d,
            get_norm=lambda norm, channels: nn.GroupNorm(32, channels) if norm == "GN" else None)
    _module("detectron2.modeling", BACKBONE_REGISTRY=Registry(), Backbone=D2Backbone, ShapeSpec=_ShapeSpec)
    _module("detectron2.modeling.backbone", build_resnet_backbone=lambda d2_cfg, input_shape: _D2ResNet())
    _module("fvcore")
    _module("fvcore.nn")
    _module("fvcore.nn.weight_init", c2_xavier_fill=c2_xavier_fill)
    _module("timm")
    _module("timm.data")
    _module("timm.data.constants", IMAGENET_DEFAULT_MEAN=(0.485, 0.456, 0.406), IMAGENET_DEFAULT_STD=(0.229, 0.224, 0.225))
    _module("timm.models")
    _module("timm.models.layers", DropPath=_DropPath, trunc_normal_=nn.init.trunc_normal_,
            to_2tuple=lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x))
    _module("tarvis.config", cfg=cfg)


def _original_cfg(ours, backbone: str):
    """The original's config (its YamlConfig) with the values of ours that its modelling code reads."""
    from tarvis.utils.yaml_config import YamlConfig

    model = ours.model
    datasets = {name: {"TYPE": ours.datasets[name].type.value, "NUM_CLASSES": ours.datasets[name].num_classes}
                for name in ours.training.dataset_list}
    return YamlConfig({
        "MODEL": {"BACKBONE": backbone, "CROSS_ATTENTION_TYPE": model.cross_attention_type,
                  "NUM_OBJECT_QUERIES": model.num_object_queries, "NUM_BACKGROUND_QUERIES": model.num_background_queries,
                  "NUM_VOS_QUERIES_PER_OBJECT": model.num_vos_queries_per_object},
        "TRAINING": {"DATASET_LIST": list(ours.training.dataset_list),
                     "POINT_VOS_TASK_SAMPLE_LIKELIHOOD": ours.training.point_vos_task_sample_likelihood},
        "DATASETS": datasets,
    }, "")


def import_original(path: Path, deps: Path | None):
    """The original's TarvisInferenceModel class, or a string saying why it does not import."""
    if not (path / "tarvis" / "inference" / "tarvis_inference_model.py").is_file():
        return f"{path} holds no original TarViS package (tarvis/inference/tarvis_inference_model.py)"
    sys.path.insert(0, str(path))
    if deps is not None:
        sys.path.append(str(deps))  # last: torch and numpy stay this venv's
    os.environ.setdefault("TARVIS_WORKSPACE_DIR", tempfile.gettempdir())  # read by the backbone builders only
    try:
        import einops  # noqa: F401
        import tarvis.utils.yaml_config  # noqa: F401
    except ImportError as err:
        return f"the original's dependencies do not import ({err}); pass --original-deps"
    _module("MultiScaleDeformableAttention")  # no CUDA op: MSDeformAttn falls back to its PyTorch path
    return None


def build_original(backbone: str, ours_cfg, state: dict[str, Tensor]) -> nn.Module:
    _install_stand_ins(_original_cfg(ours_cfg, backbone))
    for name in [n for n in sys.modules if n.startswith(("tarvis.modelling", "tarvis.inference"))]:
        del sys.modules[name]  # the backbone builder reads the config at build time
    from tarvis.inference.tarvis_inference_model import TarvisInferenceModel

    model = TarvisInferenceModel("YOUTUBE_VIS").eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"original {backbone}: weights missing for {missing[:5]}...")
    if unexpected:
        raise RuntimeError(f"original {backbone}: unexpected weights {unexpected[:5]}...")
    return model


# -- the calls ---------------------------------------------------------------------------------------------------

def inputs(frames: int, height: int, width: int):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, frames, 3, height, width, generator=g) * 255
    masks = torch.zeros(NUM_OBJECTS, height, width, dtype=torch.bool)
    step = width // NUM_OBJECTS
    for n in range(NUM_OBJECTS):
        masks[n, height // 4: 3 * height // 4, n * step + step // 4: n * step + 3 * step // 4] = True
    points = torch.tensor([[0.3, 0.25], [0.6, 0.7]])[:NUM_OBJECTS]  # normalised (y, x) in the unpadded image
    point_frames = torch.arange(NUM_OBJECTS) % 2
    return images, masks, points, point_frames


def ours_call(model, task: str, images: Tensor, masks: Tensor, points: Tensor, point_frames: Tensor) -> Callable:
    if task in ("VIS", "VPS"):
        kwargs = {"dataset": TASKS[task]}
    elif task == "VOS":
        kwargs = {"objects": ObjectReferences(masks=masks[None, :, None], mask_frames=torch.tensor([0]))}
    else:
        kwargs = {"objects": ObjectReferences(points=points[None], point_frames=point_frames[None])}
    run_task = Task[task]

    def call() -> Tensor:
        final = model(images, run_task, all_layers=False, **kwargs).final
        return final.mask_logits if task in ("VIS", "VPS") else final.object_logits[0]
    return call


def original_call(model, task: str, images: Tensor, masks: Tensor, points: Tensor, point_frames: Tensor) -> Callable:
    ids = torch.arange(1, NUM_OBJECTS + 1)
    frame_indices = torch.arange(images.shape[1])

    def call() -> Tensor:
        model.change_target_dataset(TASKS[task])
        if task in ("VIS", "VPS"):
            return model(images)["pred_instance_seg_logits"][None]
        model.reset_vos_buffers()
        if task == "VOS":
            info = {"masks": masks, "frame_indices": torch.zeros(NUM_OBJECTS, dtype=torch.int64), "instance_ids": ids}
        else:
            info = {"point_coords": points, "frame_indices": point_frames, "instance_ids": ids}
        return model(images, frame_indices, info)["pred_vos_logits"]
    return call


def peak_mib(model: nn.Module, call: Callable) -> float:
    """MiB that tensors created by one call hold at its peak (weights excluded)."""
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        call()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    return (peak[_MemRefType.ACT] + peak[_MemRefType.TEMP]) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path(os.environ.get("TARVIS_ORIGINAL", "/tmp/oracle/work")))
    parser.add_argument("--original-deps", type=Path, default=None)
    parser.add_argument("--backbones", nargs="+", default=["SwinTiny", "ResNet50"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each model per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    args = parser.parse_args()

    why = import_original(args.original, args.original_deps)
    if why:
        print(f"skipped: {why}")
        return 0
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), clip {args.frames}x{args.height}x{args.width}, "
          f"{args.repeats} alternating calls each; load average {os.getloadavg()}")
    print("backbone  task  ours_s  orig_s  speed(orig/ours)  ours_MiB  orig_MiB  max|diff|")
    data = inputs(args.frames, args.height, args.width)
    base = load_config(CONFIG)
    for backbone in args.backbones:
        cfg = replace(base, model=replace(base.model, backbone=backbone, kernel_backend="auto"))
        ours = build_model(cfg).eval()
        state = parity_state_dict(ours)
        # ResNet's frozen batch-norm variances drawn as N(0, 1) would be negative (NaN activations): make them positive
        state = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}
        ours.load_state_dict(state, strict=True)
        original = build_original(backbone, cfg, state)
        for task in args.tasks:
            calls = {"ours": ours_call(ours, task, *data), "orig": original_call(original, task, *data)}
            times: dict[str, list[float]] = {"ours": [], "orig": []}
            with torch.no_grad():
                outs = {name: call() for name, call in calls.items()}  # warm-up, and the agreement check
                # the last frame: the original sets logits before an object's reference frame to -1e3
                diff = (outs["ours"][:, -1] - outs["orig"][:, -1]).abs().max().item()
                for _ in range(args.repeats):
                    for name, call in calls.items():
                        started = time.perf_counter()
                        call()
                        times[name].append(time.perf_counter() - started)
                mem = {name: float("nan") for name in calls}
                if not args.no_memory:
                    mem = {"ours": peak_mib(ours, calls["ours"]), "orig": peak_mib(original, calls["orig"])}
            t_ours, t_orig = statistics.median(times["ours"]), statistics.median(times["orig"])
            print(f"{backbone:9} {task:4}  {t_ours:6.2f}  {t_orig:6.2f}  {t_orig / t_ours:16.2f}  "
                  f"{mem['ours']:8.0f}  {mem['orig']:8.0f}  {diff:.1e}", flush=True)
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
