"""`python -m tarvis_fast.app CKPT` / `tarvis-app CKPT`: serve the web app on http://127.0.0.1:7860.

    tarvis-app CHECKPOINT [--port P] [--host H] [--amp] [--device cuda:0] [--min_dim N] [--max_upload_mb M]

The checkpoint (its config.yaml beside it) is loaded before the server starts: a missing, truncated or corrupt
one ends the command with one line `error: <path>: <what is wrong>` and exit code 2 (see `cli_errors.py`), and
nothing is served. Uploads and results live in a temporary folder that is deleted when the server stops.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from tarvis_fast.cli_errors import UsageError, add_debug_flag, check_device_available, check_device_name, run_cli
from tarvis_fast.config import load_checkpoint_config
from tarvis_fast.formats.checkpoint import check_checkpoint_file

PROG = "tarvis-app"
DEFAULT_HOST = "127.0.0.1"  # only this machine; --host 0.0.0.0 serves the network (the app has no login)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the .pth file; its config.yaml lies beside it")
    parser.add_argument("--port", type=int, help="default: the first free port from 7860")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast where the device supports it")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--min_dim", type=int,
                        help="run at this shorter side instead of each task's benchmark setting (faster on a CPU)")
    parser.add_argument("--max_upload_mb", type=float, default=100.0, help="largest upload taken (default 100)")
    add_debug_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 for a bad flag or checkpoint, with one line on stderr)."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("port", "min_dim", "max_upload_mb"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag} {value}", "must be positive")
    check_checkpoint_file(args.checkpoint)
    cfg = load_checkpoint_config(args.checkpoint)
    check_device_name("--device", args.device)
    check_device_available("--device", args.device)

    # SIGTERM (a service manager, `kill`) interrupts the loading as Ctrl-C does, so that the temporary folder goes
    # too; once serving, either signal stops the server and the command ends normally.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="tarvis-app-") as folder:
        workdir = Path(folder)
        # Gradio's copies of uploads and results go there too; set before gradio is imported (some of its modules
        # read it then, the rest when the page is built).
        os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
        from tarvis_fast.app.ui import AppSettings, build_app, serve  # torch and gradio: after the cheap checks
        from tarvis_fast.inference.predictor import VideoPredictor

        predictor = VideoPredictor.from_checkpoint(args.checkpoint, config=cfg, device=args.device, amp=args.amp)
        options = {"min_dim": args.min_dim} if args.min_dim is not None else {}
        settings = AppSettings(max_upload_mb=args.max_upload_mb, segment_options=options)
        demo = build_app(predictor, workdir, settings)
        # A flag rather than an exception: a signal that lands while Gradio is still starting up (after the page
        # answers, before launch() returns) must not escape from inside its start-up code.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        serve(demo, workdir, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, until=stop)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
