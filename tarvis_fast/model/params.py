"""Parameter counts of the network per backbone and module.

    python -m tarvis_fast.model.params [--config configs/finetune_resnet50_swin-tiny.yaml] [--backbones ...]

The models are built on the meta device (no memory, no initialisation), with the config's query and dataset
settings and each backbone in turn. Counts are parameters, in millions; buffers (frozen batch norm, Swin's
position indices) are not counted.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from tarvis_fast.config import Config, load_config
from tarvis_fast.model.backbones import BACKBONE_NAMES
from tarvis_fast.model.build import build_model

MODULES = {
    "backbone": "backbone.backbone",
    "temporal neck": "backbone.fpn",
    "query tables": "embedding_container",
    "decoder": "decoder",
    "object encoder": "vos_query_extractor",
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(cfg: Config, backbones: Sequence[str]) -> str:
    """A markdown table: one row per backbone, one column per module, and the total."""
    header = ["backbone", *MODULES, "total"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name in backbones:
        with torch.device("meta"):
            model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=name)))
        counts = [count(model.get_submodule(path)) for path in MODULES.values()]
        cells = [f"{n / 1e6:.2f}M" for n in (*counts, count(model))]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_config = Path(__file__).resolve().parents[2] / "configs" / "finetune_resnet50_swin-tiny.yaml"
    parser.add_argument("--config", type=Path, default=default_config if default_config.is_file() else None,
                        help="a config (ours or the original's config.yaml); default: the fine-tuning config")
    parser.add_argument("--backbones", nargs="+", choices=BACKBONE_NAMES, default=list(BACKBONE_NAMES))
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    print(f"Parameters per module ({args.config.name if args.config else 'default config'}: "
          f"{cfg.model.num_object_queries} instance queries, semantic queries for "
          f"{', '.join(sorted(n for n in cfg.training.dataset_list if cfg.datasets[n].type != 'vos'))})\n")
    print(parameter_table(cfg, args.backbones))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
