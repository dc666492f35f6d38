"""Package discovery: `kernels/` installs as `tarvis_fast.kernels` (see pyproject.toml); everything else is there."""
from setuptools import find_packages, setup

kernel_packages = ["tarvis_fast." + name for name in find_packages(include=["kernels", "kernels.*"])]
setup(packages=find_packages(include=["tarvis_fast", "tarvis_fast.*"]) + kernel_packages)
