"""GPU report cases for the whole network (run through `python bench/gpu_report.py --only model`).

One group per backbone and benchmark clip, at the benchmarks' inference settings (SPEC §4): batch 1, bf16
autocast (the original's `--amp`), final decoder layer only, random weights (speed and memory do not depend
on them). Rows: the PyTorch path of every op (`kernel_backend="torch"`, the group's reference), the Triton
kernels (`"auto"` on CUDA), the Triton model compiled as `infer.py --compile` does (`compile_model`: Inductor on
each block, `tarvis_fast/model/compile.py`), and the Triton model under a whole-model torch.compile (Inductor;
the VOS/PET object encoder's data-dependent shapes break the graph there). A compiled row's note gives how long
its first call took (compilation included, cold unless `TORCHINDUCTOR_CACHE_DIR` holds earlier runs' code); its
speed-up over eager is its time against the "triton" row's. A training group times forward + backward of all
ten predictions at the training clip size. Peak memory is what a call adds to the weights and inputs.

Clips (input size -> padded size):
- YouTube-VIS VIS:  12 frames, 448x796 -> 448x832 (min_dim 448 of a 720x1280 video), 40 classes
- KITTI-STEP VPS:    6 frames, 375x1242 -> 384x1280 (native), 19 classes
- DAVIS VOS:        12 frames, 480x854 -> 512x896 (native), 3 objects from first-frame masks (8 queries each)
- BURST PET:         8 frames, 512x910 -> 512x960 (min_dim 512), 4 objects from points
- training VIS:      3 frames, 512x512, 2 clips, all predictions, forward + backward
"""
from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from benchcase import BenchCase

from tarvis_fast.config import load_config
from tarvis_fast.inference.runner import _no_duck_sizing, compile_model
from tarvis_fast.model import ObjectReferences, Task, TarViS, build_model

BACKBONES = ("ResNet50", "SwinLarge")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune_resnet50_swin-tiny.yaml"


@dataclass(frozen=True)
class Clip:
    name: str
    task: Task
    frames: int
    height: int
    width: int
    dataset: str | None = None
    mask_objects: int = 0
    point_objects: int = 0
    batch: int = 1
    training: bool = False

    def inputs(self, device: torch.device) -> dict:
        """The forward's arguments: images and the dataset or the objects."""
        g = torch.Generator(device=device).manual_seed(0)
        images = torch.rand(self.batch, self.frames, 3, self.height, self.width, device=device, generator=g) * 255
        kwargs: dict = {"task": self.task, "all_layers": self.training}
        if self.dataset is not None:
            kwargs["dataset"] = self.dataset
        if self.task is Task.VOS:
            kwargs["objects"] = self.objects(device)
        return {"images": images, **kwargs}

    def objects(self, device: torch.device) -> ObjectReferences:
        """Mask objects: side-by-side boxes in frame 0; point objects: points spread over frames 0..3."""
        refs = ObjectReferences()
        if self.mask_objects:
            masks = torch.zeros(self.batch, self.mask_objects, 1, self.height, self.width, dtype=torch.bool,
                                device=device)
            step = self.width // self.mask_objects
            for n in range(self.mask_objects):
                masks[:, n, 0, self.height // 4: 3 * self.height // 4, n * step + step // 4: n * step + 3 * step // 4] = True
            refs.masks, refs.mask_frames = masks, torch.tensor([0], device=device)
        if self.point_objects:
            n = self.point_objects
            ys = torch.linspace(0.2, 0.8, n, device=device)
            refs.points = torch.stack([ys, ys.flip(0)], -1)[None].repeat(self.batch, 1, 1)
            refs.point_frames = (torch.arange(n, device=device) % 4)[None].repeat(self.batch, 1)
        return refs


CLIPS = (
    Clip("ytvis VIS 12x448x796", Task.VIS, 12, 448, 796, dataset="YOUTUBE_VIS"),
    Clip("kitti-step VPS 6x375x1242", Task.VPS, 6, 375, 1242, dataset="KITTI_STEP"),
    Clip("davis VOS 12x480x854", Task.VOS, 12, 480, 854, mask_objects=3),
    Clip("burst PET 8x512x910", Task.VOS, 8, 512, 910, point_objects=4),
    Clip("train VIS 2x3x512x512", Task.VIS, 3, 512, 512, dataset="YOUTUBE_VIS", batch=2, training=True),
)
# (row name, kernel backend, compilation: None, "regional" (what infer.py --compile runs) or "whole")
IMPLS = (("torch", "torch", None), ("triton", "auto", None),
         ("triton + compile_model (infer.py --compile)", "auto", "regional"),
         ("triton + whole-model torch.compile", "auto", "whole"))


@functools.cache
def bench_model(backbone: str, backend: str, device: str) -> TarViS:
    """One model per backbone and kernel backend, shared by the cases (same seed, so the same weights)."""
    cfg = load_config(CONFIG)
    cfg = replace(cfg, model=replace(cfg.model, backbone=backbone, kernel_backend=backend))
    torch.manual_seed(0)
    return build_model(cfg).to(device)


def _setup(backbone: str, backend: str, compiled: str | None, clip: Clip, device: torch.device,
           notes: dict[str, str]) -> Callable:
    def setup() -> Callable[[], object]:
        model = bench_model(backbone, backend, str(device)).train(clip.training)
        if compiled == "regional":
            model = copy.deepcopy(model)  # compiled in place; the shared model stays eager for the other rows
            compile_model(model)
            forward = model
        else:
            forward = torch.compile(model) if compiled == "whole" else model
        inputs = clip.inputs(device)

        def run() -> object:
            with torch.autocast(device.type, dtype=torch.bfloat16), _no_duck_sizing():
                if not clip.training:
                    with torch.no_grad():
                        return forward(**inputs)
                model.zero_grad(set_to_none=True)
                out = forward(**inputs)
                loss = sum(t.float().square().mean() for layer in out.layers for t in vars(layer).values())
            loss.backward()
            return loss

        started = time.perf_counter()
        run()  # compiles, autotunes and allocates the workspaces before timing
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if compiled:
            notes["first call (compiles)"] = f"{time.perf_counter() - started:.1f} s"
        return run

    return setup


def min_bytes(backbone: str, clip: Clip, device: torch.device) -> int:
    """The weights read once and the clip read once (a lower bound the network is far above)."""
    weights = sum(p.numel() * p.element_size() for p in bench_model(backbone, "auto", str(device)).parameters())
    return weights + clip.batch * clip.frames * 3 * clip.height * clip.width * 4


def cases(device: torch.device, clips: Iterable[Clip] = CLIPS,
          backbones: Iterable[str] = BACKBONES) -> Iterable[BenchCase]:
    for backbone in backbones:
        for clip in clips:
            mode = "fwd+bwd" if clip.training else "fwd"
            for impl, backend, compiled in IMPLS:
                notes: dict[str, str] = {}
                yield BenchCase(f"model {backbone} {clip.name}", impl, mode,
                                _setup(backbone, backend, compiled, clip, device, notes),
                                min_bytes(backbone, clip, device), notes)
