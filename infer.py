"""Inference on a benchmark or on your own video; see `tarvis_fast/inference/cli.py` or run with --help.

    python infer.py CHECKPOINT --dataset DAVIS --output_dir D [--amp] [--compile] [--eval]
    python infer.py CHECKPOINT --video clip.mp4 --task vos --masks first.png --output_dir D
"""
import sys

from tarvis_fast.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
