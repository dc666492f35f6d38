"""`python -m tarvis_fast.app`: a bad checkpoint or flag ends it before serving, with one line and exit code 2; a
good one serves on 127.0.0.1 and, stopped, leaves no temporary folder behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tarvis_fast.app.__main__ import main

from .conftest import free_port

STARTUP_S = 90


@pytest.fixture
def corrupt(app_checkpoint: Path, tmp_path: Path) -> Path:
    """The checkpoint cut in half, with its config.yaml beside it."""
    shutil.copy(app_checkpoint.parent / "config.yaml", tmp_path / "config.yaml")
    data = app_checkpoint.read_bytes()
    (tmp_path / "model.pth").write_bytes(data[: len(data) // 2])
    return tmp_path / "model.pth"


@pytest.mark.parametrize("argv, message", [
    (["{corrupt}"], "{corrupt}: truncated or corrupt checkpoint"),
    (["{missing}"], "{missing}: checkpoint not found"),
    (["{checkpoint}", "--port", "0"], "--port 0: must be positive"),
    (["{checkpoint}", "--device", "gpu"], "--device gpu: not a device"),
])
def test_a_bad_start_is_one_line_and_exit_2(argv, message, corrupt, app_checkpoint, tmp_path, capsys):
    paths = {"corrupt": corrupt, "missing": tmp_path / "none.pth", "checkpoint": app_checkpoint}
    assert main([arg.format(**paths) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(**paths)}") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serves_on_localhost_and_cleans_up(stop_signal, app_checkpoint, tmp_path):
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "tarvis_fast.app", str(app_checkpoint), "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.5)
        assert [p.name.startswith("tarvis-app-") for p in tmp_path.iterdir()] == [True]
    finally:
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output
    assert list(tmp_path.iterdir()) == []
