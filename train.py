"""Training; see `tarvis_fast/training/cli.py` or run with --help.

    python train.py --model_dir D --cfg configs/X.yaml [--cfg.a.b v ...] [--amp] [--finetune_from DIR]
    python train.py --restore_session D/NNNNNN.pth
    torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d --rdzv_endpoint HOST:PORT train.py ...
"""
import sys

from tarvis_fast.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
