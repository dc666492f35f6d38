"""`train.py` on the tiny test model and the fake loader, for the tests that run training as a process (killed
and resumed, or under torchrun):

    python tests/training/fake_train.py --model_dir D --cfg C.yaml --device cpu ...
    torchrun --nproc_per_node 2 tests/training/fake_train.py ...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers and training as packages

from helpers.tiny import tiny_model

from tarvis_fast.training.cli import main
from training.fake_data import FakeTrainLoader

if __name__ == "__main__":
    sys.exit(main(build_model=lambda cfg: tiny_model(), build_loader=FakeTrainLoader))
