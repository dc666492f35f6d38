"""An app server for the app's tests: the small random checkpoint, served by the test process on a free localhost
port, at a small resolution (min_dim 64) so that a run takes seconds on a CPU."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.checkpoint import save_small_checkpoint

MAX_UPLOAD_MB = 1.0


@dataclass(frozen=True)
class Server:
    url: str
    workdir: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def app_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_checkpoint(tmp_path_factory.mktemp("app-checkpoint"))


@pytest.fixture(scope="session")
def server(app_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("gradio", reason="the app needs gradio: pip install -e .[app]")
    from tarvis_fast.app.ui import AppSettings, build_app, serve
    from tarvis_fast.inference.predictor import VideoPredictor

    workdir = tmp_path_factory.mktemp("app-workdir")
    settings = AppSettings(max_upload_mb=MAX_UPLOAD_MB, segment_options={"min_dim": 64})
    with pytest.MonkeyPatch.context() as env:  # Gradio's copies of files into workdir too, as the app's own
        env.setenv("GRADIO_TEMP_DIR", str(workdir / "gradio"))
        demo = build_app(VideoPredictor.from_checkpoint(app_checkpoint), workdir, settings)
        url = serve(demo, workdir, host="127.0.0.1", port=free_port(), max_upload_mb=MAX_UPLOAD_MB)
        try:
            yield Server(url, workdir)
        finally:
            demo.close()
