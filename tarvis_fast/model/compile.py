"""Regional torch.compile of a TarViS network: bounded compile time, reused across blocks and runs.

Compiling the backbone and the decoder whole with dynamic shapes (the first approach) kept Inductor's C++ code
generation busy for over 30 minutes on a 2-core CPU (Swin-T, 4x256x384) before the first call returned. Here the
repeated blocks are compiled instead, each on its own (PyTorch's "regional compilation"):

- Swin blocks, ResNet bottlenecks, the neck's deformable and window layers, and the decoder's cross-attention,
  self-attention and FFN blocks. Blocks of one kind share their code, so Dynamo traces and Inductor compiles each
  (kind, input shape) once and every other block of that kind reuses the graph: Swin-T's 12 blocks cost 4 graphs,
  one per stage (regular and shifted windows run the same code, their windows given as data: see
  `backbones/swin.py`; when they branched on the shift, the 8 graphs took 90 CPU seconds to compile instead of 50),
  the decoder's 27 blocks 3 x the number of levels.
- Spatial sizes are static: Inductor generates code for exact heights and widths, which is what keeps it fast
  (with symbolic heights and widths, its index simplification of the window partitions is what took the half
  hour), and the model pads frames to multiples of 64, so a video's spatial shapes are those of its padded size.
  Each new padded size compiles the blocks once more: those are the buckets. Sizes of one bucket (say 250x380
  and 256x384, both padded to 256x384) share the graphs.
- The dimensions that scale with the number of frames (a clip's last frames come as a shorter clip) or of queries
  (VOS objects) are marked dynamic before each call (`DYNAMIC_DIMS`): they are batch-like (outer loops and matmul
  sizes), cheap for Inductor, and they would otherwise recompile for every clip length and object count. A size
  of 0 or 1 is still specialised by Dynamo (one more graph, e.g. for a one-frame clip).
- Everything else (patch embedding, Swin's patch merging, position embeddings, query set-up, the object encoder
  with its data-dependent shapes, the prediction heads) runs eagerly: it is cheap, or it would recompile per clip.
  (Compiling Swin-T's 3 patch mergings cost 3 graphs and 7 CPU seconds for no measurable gain.)
- On a CPU, Inductor leaves the Swin blocks and the neck's deformable layers eager too (`CPU_EAGER_TYPES`): its code
  did not beat eager there, and they were most of the compile time.

Compiled artefacts (Inductor's FX graph cache and AOTAutograd's cache, on by default) are kept on disk in
`TORCHINDUCTOR_CACHE_DIR`; `default_cache_dir` puts them under `~/.cache/tarvis_fast/inductor` unless that
variable is set, so that a later run of the same sizes skips code generation.

Compilation is in place (`nn.Module.compile`): parameter names, and so checkpoints, are unchanged.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tarvis_fast.model.backbones.resnet import BasicBlock, Bottleneck
from tarvis_fast.model.backbones.swin import SwinBlock
from tarvis_fast.model.decoder import CrossAttentionBlock, FFNBlock, SelfAttentionBlock
from tarvis_fast.model.neck import DeformableEncoderLayer, WindowAttentionLayer

# Per block type, the (positional argument, dimension) pairs that scale with the clip's frames or queries.
DYNAMIC_DIMS: dict[type[nn.Module], tuple[tuple[int, int], ...]] = {
    SwinBlock: ((0, 0),),                            # x (B·T, H, W, C)
    Bottleneck: ((0, 0),),                           # x (B·T, C, H, W)
    BasicBlock: ((0, 0),),
    DeformableEncoderLayer: ((0, 0),),               # src (B·T, S, C)
    WindowAttentionLayer: ((0, 1), (1, 1)),          # windows, pos (B·P, K·T, C)
    CrossAttentionBlock: ((0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (4, 2)),  # queries, embeds (B, Q, C),
    #                                                  keys, values (B, T·h·w, C), mask logits (B, Q, T·h·w)
    SelfAttentionBlock: ((0, 1), (1, 1)),            # queries, embeds (B, Q, C)
    FFNBlock: ((0, 1),),                             # x (B, Q, C)
}
REGION_TYPES: tuple[type[nn.Module], ...] = tuple(DYNAMIC_DIMS)

# Block types left eager when Inductor compiles for a CPU. Their time is in the matmul, attention and grid_sample
# kernels that Inductor calls as they are, so its code ran them within about 10% of eager (and up to 25% slower
# on a busy machine; Swin-T and the neck, VIS 4x256x384, 2 threads), while they took about 60% of the first
# call's compile time, again for every new padded size: 80 s of 150 s for Swin-T's 4 block graphs, 15 s for the
# deformable layer. The neck's window attention (1.3-1.7x) and the decoder's blocks (1.1-2x) stay compiled.
CPU_EAGER_TYPES: tuple[type[nn.Module], ...] = (SwinBlock, DeformableEncoderLayer)

# Graphs one block's code may hold (Dynamo's per-code-object recompile limit): the distinct input shapes of all
# blocks of a kind over the buckets a process sees. A Swin block sees 4 stages per bucket, the decoder's
# cross-attention 2 graphs (Inductor specialises key counts above 4096) and a one-frame clip 1 more; 64 leaves room
# for about 8 buckets, after which Dynamo runs that block eagerly (with a warning) rather than compiling without
# end.
RECOMPILE_LIMIT = 64


def compile_regions(model: nn.Module, backend: str | Callable = "inductor") -> int:
    """Compile, in place, every block of `REGION_TYPES` in `model`, except those of `CPU_EAGER_TYPES` when
    Inductor compiles for a CPU (the model's parameters are on the CPU); returns how many blocks.

    Each block's `forward` becomes a wrapper that marks its `DYNAMIC_DIMS` and calls its type's `forward`
    compiled once per type (static shapes otherwise), so blocks of one type share Dynamo's cache. The wrapper is
    an instance attribute: the state dict is unchanged, and a model compiled twice is compiled once."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    skipped = CPU_EAGER_TYPES if backend == "inductor" and on_cpu else ()
    compiled: dict[type[nn.Module], Callable] = {}
    regions = [m for m in model.modules() if isinstance(m, REGION_TYPES) and not isinstance(m, skipped)]
    for region in regions:
        if isinstance(region.__dict__.get("forward"), _RegionForward):
            continue
        kind = next(t for t in type(region).__mro__ if t in DYNAMIC_DIMS)
        if kind not in compiled:
            compiled[kind] = torch.compile(kind.forward, backend=backend, dynamic=False)
        region.forward = _RegionForward(region, compiled[kind], DYNAMIC_DIMS[kind])
    raise_recompile_limit(RECOMPILE_LIMIT)
    return len(regions)


class _RegionForward:
    """A compiled block's forward: marks the frame and query dimensions dynamic, then calls the compiled code.
    It runs outside the compiled region (marking inside it would be traced)."""

    def __init__(self, module: nn.Module, compiled: Callable, dims: tuple[tuple[int, int], ...]) -> None:
        self.module, self.compiled, self.dims = module, compiled, dims

    def __call__(self, *args, **kwargs):
        for index, dim in self.dims:
            if index < len(args) and isinstance(args[index], torch.Tensor) and args[index].dim() > dim:
                torch._dynamo.maybe_mark_dynamic(args[index], dim)
        return self.compiled(self.module, *args, **kwargs)


def raise_recompile_limit(limit: int) -> None:
    """Dynamo's per-code-object recompile limit, at least `limit` (`recompile_limit`, called `cache_size_limit`
    before torch 2.7)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))


def default_cache_dir() -> Path:
    """Point Inductor's on-disk caches at `~/.cache/tarvis_fast/inductor` (or `$XDG_CACHE_HOME/...`) unless
    `TORCHINDUCTOR_CACHE_DIR` is set; returns the directory in use. Inductor's own default lives in /tmp, which
    does not survive a reboot."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(base / "tarvis_fast" / "inductor")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
