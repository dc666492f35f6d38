"""The training command line (`train.py`, `tarvis-train`).

    python train.py --model_dir D --cfg configs/X.yaml [--cfg.a.b v ...] [--amp] [--finetune_from DIR]
    python train.py --restore_session D/NNNNNN.pth          # or the folder D: its newest checkpoint
    torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d --rdzv_endpoint HOST:PORT train.py ...

Under torchrun every process trains one micro-batch of `--max_samples_per_gpu` clips at a time and the global
`training.batch_size` is kept by gradient accumulation (NCCL on CUDA, gloo on the CPU). Arguments, paths and the
config are checked before torch is imported; a bad one ends the run with one line `error: <flag or path>:
<problem>` and exit code 2 (`--debug` shows the traceback; `tarvis_fast.cli_errors`).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tarvis_fast.cli_errors import add_debug_flag, check_output_dir, run_cli
from tarvis_fast.config import Config, load_config, split_overrides
from tarvis_fast.training.run_dir import (
    CONFIG_NAME,
    check_new_model_dir,
    remove_stale_temporaries,
    resolve_restore_path,
)

if TYPE_CHECKING:
    from tarvis_fast.model import TarViS

PROG = "train.py"
ModelFactory = Callable[[Config], "TarViS"]
LoaderFactory = Callable[..., Any]  # build_train_loader's signature (see tarvis_fast.training.trainer)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Train TarViS (config overrides: --cfg.KEY VALUE).")
    parser.add_argument("--model_dir", type=Path, help="the run's folder: new or empty (required for a new run)")
    parser.add_argument("--cfg", type=Path, help="config YAML (ours or the original's); required for a new run")
    parser.add_argument("--amp", nargs="?", const="auto", choices=("auto", "bf16", "fp16"),
                        help="mixed precision: bf16 where the device supports it (auto), else fp16 with loss scaling")
    parser.add_argument("--finetune_from", type=Path,
                        help="a pre-training run's folder (config.yaml + .pth): start from its newest checkpoint")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="--finetune_from: unpickle any object its checkpoint holds (only for files you trust)")
    parser.add_argument("--restore_session", type=Path, help="continue a run from its checkpoint (or its folder)")
    parser.add_argument("--max_samples_per_gpu", type=int, default=1, help="clips per process per micro-step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_workers", type=int, default=2, help="data loading workers per process")
    parser.add_argument("--display_interval", type=int, default=5, help="iterations between log lines")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA (one GPU per process, LOCAL_RANK) when available, else the CPU")
    parser.add_argument("--wandb_project", help="also log to this Weights & Biases project (needs wandb)")
    add_debug_flag(parser)
    return parser


@dataclass(frozen=True)
class Launch:
    """The validated command line."""

    cfg: Config
    model_dir: Path
    restore: Path | None
    finetune_checkpoint: Path | None
    trust_checkpoint: bool
    amp: str | None
    micro_batch_size: int
    seed: int
    num_workers: int
    display_interval: int
    device: str
    wandb_project: str | None
    rank: int
    local_rank: int
    world_size: int


def _newest_checkpoint(folder: Path) -> Path:
    """The original's rule for --finetune_from: the lexicographically last .pth of the folder."""
    found = sorted(folder.glob("*.pth"))
    if not folder.is_dir() or not found or not (folder / CONFIG_NAME).is_file():
        raise ValueError(f"{folder}: --finetune_from needs a run's folder holding config.yaml and a .pth checkpoint")
    return found[-1]


def _restored_config(checkpoint: Path, cfg_file: Path | None, overrides: Sequence[str]) -> Config:
    """The run's own config; overrides apply on top (e.g. more iterations). A --cfg file, if given, must say the
    same: rerunning the original command plus --restore_session is fine, another config is not."""
    stored = load_config(checkpoint.parent / CONFIG_NAME, overrides)
    if cfg_file is not None and load_config(cfg_file, overrides) != stored:
        raise ValueError(f"{cfg_file}: --cfg differs from the restored run's {checkpoint.parent / CONFIG_NAME}; "
                         "leave --cfg out to continue the run as it was configured")
    return stored


def parse_launch(argv: Sequence[str], env: dict[str, str] | None = None) -> Launch:
    """Parse and check the command line against the torchrun environment, importing no torch."""
    env = dict(os.environ if env is None else env)
    rest, overrides = split_overrides(argv)
    args = build_parser().parse_args(rest)
    rank, local_rank, world_size = (int(env.get(k, d)) for k, d in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))

    restore = finetune = None
    if args.restore_session is not None:
        if args.finetune_from is not None:
            raise ValueError("--finetune_from: a restored session continues from its own checkpoint; leave it out")
        restore = resolve_restore_path(args.restore_session)
        model_dir = restore.parent
        if args.model_dir is not None and args.model_dir.resolve() != model_dir.resolve():
            raise ValueError(f"{args.model_dir}: --model_dir is not the folder of --restore_session ({model_dir})")
        cfg = _restored_config(restore, args.cfg, overrides)
    else:
        if args.model_dir is None:
            raise ValueError("--model_dir: required for a new run (or continue one with --restore_session)")
        if args.cfg is None:
            raise ValueError("--cfg: required for a new run (a config YAML, e.g. configs/finetune_resnet50_swin-tiny.yaml)")
        model_dir = args.model_dir
        if rank == 0:  # the other ranks would see the folder rank 0 has just made
            check_output_dir("--model_dir", model_dir)
            check_new_model_dir(model_dir)
        cfg = load_config(args.cfg, overrides)
        if args.finetune_from is not None:
            finetune = _newest_checkpoint(args.finetune_from)

    training = cfg.training
    if training.num_iterations <= 0:
        raise ValueError(f"--cfg.training.num_iterations: must be positive, got {training.num_iterations}")
    if args.max_samples_per_gpu <= 0:
        raise ValueError(f"--max_samples_per_gpu: must be positive, got {args.max_samples_per_gpu}")
    if training.batch_size % (world_size * args.max_samples_per_gpu):
        raise ValueError(f"--cfg.training.batch_size: {training.batch_size} is not divisible by {world_size} "
                         f"process(es) x {args.max_samples_per_gpu} sample(s) per process (--max_samples_per_gpu)")
    for flag in ("checkpoint_save_interval", "max_ckpts_to_keep"):
        if getattr(training, flag) <= 0:
            raise ValueError(f"--cfg.training.{flag}: must be positive, got {getattr(training, flag)}")
    if args.display_interval <= 0:
        raise ValueError(f"--display_interval: must be positive, got {args.display_interval}")
    if args.wandb_project is not None and importlib.util.find_spec("wandb") is None:
        raise ValueError("--wandb_project: wandb is not installed (pip install wandb)")
    return Launch(cfg=cfg, model_dir=model_dir, restore=restore, finetune_checkpoint=finetune,
                  trust_checkpoint=args.trust_checkpoint, amp=args.amp, micro_batch_size=args.max_samples_per_gpu,
                  seed=args.seed, num_workers=args.num_workers, display_interval=args.display_interval,
                  device=args.device, wandb_project=args.wandb_project, rank=rank, local_rank=local_rank,
                  world_size=world_size)


def train(launch: Launch, *, build_model: ModelFactory | None = None,
          build_loader: LoaderFactory | None = None) -> int:
    """Run a validated launch: set up torch.distributed (under torchrun), build or restore the model, train.

    build_model and build_loader replace `tarvis_fast.model.build_model` and
    `tarvis_fast.data.loader.build_train_loader` (tests train a tiny model on fake data through them).
    """
    import torch
    import torch.distributed as dist

    from tarvis_fast.config import save_config
    from tarvis_fast.training.init_weights import init_for_training
    from tarvis_fast.training.logs import TrainingLog
    from tarvis_fast.training.trainer import Trainer

    device = _device(launch, torch)
    if launch.world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        if build_model is None:
            from tarvis_fast.model import build_model
        if build_loader is None:
            from tarvis_fast.data.loader import build_train_loader as build_loader

        torch.manual_seed(launch.seed)  # every rank builds the same model (DDP also broadcasts rank 0's)
        model = build_model(launch.cfg)
        if launch.restore is None:
            if launch.rank == 0:
                launch.model_dir.mkdir(parents=True, exist_ok=True)
                save_config(launch.cfg, launch.model_dir / CONFIG_NAME)
            origin = init_for_training(model, launch.cfg, launch.finetune_checkpoint,
                                       trust_checkpoint=launch.trust_checkpoint)
        else:
            origin = f"continuing from {launch.restore}"
            if launch.rank == 0:
                remove_stale_temporaries(launch.model_dir)
                save_config(launch.cfg, launch.model_dir / CONFIG_NAME)  # overrides (more iterations) apply from now on
        trainer = Trainer(model, launch.cfg, launch.model_dir, device=device, amp_dtype=_amp_dtype(launch.amp, device),
                          seed=launch.seed, display_interval=launch.display_interval)
        if launch.restore is not None:
            trainer.restore(launch.restore)
        log = TrainingLog(launch.model_dir, trainer.iteration, launch.cfg.training.num_iterations,
                          enabled=launch.rank == 0, wandb_project=launch.wandb_project)
        trainer.log = log
        log.message(f"{launch.model_dir}: {origin}; iteration {trainer.iteration} of "
                    f"{launch.cfg.training.num_iterations} on {launch.world_size} process(es) ({device}), "
                    f"AMP {trainer.amp_dtype or 'off'}")
        loader = build_loader(launch.cfg, rank=launch.rank, world_size=launch.world_size,
                              micro_batch_size=launch.micro_batch_size, start_iteration=trainer.iteration,
                              seed=launch.seed, num_workers=launch.num_workers)
        try:
            trainer.train(loader)
        finally:
            log.close()
        return 0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _device(launch: Launch, torch: Any) -> Any:
    if launch.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested, but torch finds no CUDA device")
    if launch.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(launch.local_rank)
    return torch.device("cuda", launch.local_rank)


def _amp_dtype(amp: str | None, device: Any) -> Any:
    """None without --amp; bf16 for auto where supported (any CPU, CUDA GPUs from Ampere on), else fp16."""
    import torch

    if amp is None:
        return None
    if amp == "auto":
        bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def main(argv: Sequence[str] | None = None, *, build_model: ModelFactory | None = None,
         build_loader: LoaderFactory | None = None) -> int:
    """Entry point; returns the exit code (bad input: one line on stderr and 2, as `cli_errors.run_cli` says)."""
    return run_cli(lambda args: train(parse_launch(args), build_model=build_model, build_loader=build_loader), argv)
