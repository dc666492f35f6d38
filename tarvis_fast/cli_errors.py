"""One error convention for every command line of the project (infer.py, the metrics, the config printer, and
later train.py and the data preview).

    def main(argv: Sequence[str] | None = None) -> int:
        return run_cli(_main, argv)              # _main(argv) parses with a parser that has add_debug_flag()

A bad input (the project's own errors, which are ValueErrors, any OSError, and what a corrupt pickle or zip
raises) ends the run with ONE line on stderr, `error: <path or flag>: <what is wrong>`, and exit code 2, the code
argparse uses for its usage errors. `--debug` (or `TARVIS_DEBUG=1` in the environment) prints the traceback
above that line. Anything else is a bug and keeps its traceback.

Checks that run before the expensive work (`check_output_dir`, `check_output_file`, `check_device_name`) live
here too, so that every command line validates its paths the same way; none of this module imports torch.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import traceback
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

DEBUG_FLAG = "--debug"
DEBUG_ENV = "TARVIS_DEBUG"
EXIT_USAGE = 2          # bad input, as argparse
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

# What a bad input raises. UnpicklingError and BadZipFile are Exceptions, not ValueErrors; EOFError is what
# unpickling a truncated file raises.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError, pickle.UnpicklingError,
                                                 zipfile.BadZipFile)


class UsageError(ValueError):
    """A flag, or a path or file a flag names, is unusable. `str()` is "<subject>: <problem>"."""

    def __init__(self, subject: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{subject}: {problem}")
        self.subject = str(subject)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Declare --debug on a parser whose main runs under `run_cli` (which reads the flag before parsing, so that
    errors raised while parsing get their traceback too)."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"show the traceback of an error (also: {DEBUG_ENV}=1)")


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(err: BaseException) -> str:
    """The one-line message of a bad input: OSErrors as "<file>: <reason>", others as their message, with line
    breaks (YAML and JSON parsers write several lines) folded into spaces."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return "error: " + re.sub(r"\s*\n\s*", " ", text.strip())


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` under the convention (module docstring); returns the exit code instead of exiting, so
    that tests can call a command line in-process. argparse's own exits (--help, usage errors) pass through as
    their codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        return main(argv) or 0
    except SystemExit as exit_:  # argparse: 0 after --help, 2 after a usage error (its message is printed)
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(f"error: {exit_.code}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except INPUT_ERRORS as err:
        if debug:
            traceback.print_exc()
        print(error_line(err), file=sys.stderr)
        return EXIT_USAGE


# ============================================================================================== checks before work

def check_output_dir(flag: str, path: Path) -> None:
    """`path` is a folder we can write into, or can be created as one (the nearest existing ancestor is a
    writable folder). Nothing is created."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{flag} {path}", "exists and is not a folder")
        _check_writable(flag, path, path)
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}", f"cannot be created: {ancestor} is not a folder")
    _check_writable(flag, path, ancestor)


def check_output_file(flag: str, path: Path) -> None:
    """`path` can be written as a file: not a folder, and its folder exists and is writable."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}", "is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}", f"folder {path.parent} does not exist")
    _check_writable(flag, path, path.parent)


def _check_writable(flag: str, path: Path, folder: Path) -> None:
    # os.access answers for the real uid and says yes to root everywhere; good enough to catch the usual mistake
    # (a read-only mount, someone else's folder) before the work rather than after it.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}", f"{folder} is not writable")


DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps|xpu|meta)(:\d+)?")


def check_device_name(flag: str, device: str | None) -> None:
    """The spelling of a torch device string ("cpu", "cuda", "cuda:1"), checked without importing torch; whether
    the device exists is `check_device_available`'s question."""
    if device is not None and DEVICE_PATTERN.fullmatch(device) is None:
        raise UsageError(f"{flag} {device}", "not a device; give cpu, cuda or cuda:N")


def check_device_available(flag: str, device: str | None) -> None:
    """A CUDA device asked for exists. Imports torch: call it after the cheap checks, before loading a model."""
    if device is None or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise UsageError(f"{flag} {device}", f"CUDA is not available ({why}); use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"{flag} {device}", f"there are {torch.cuda.device_count()} CUDA devices (0-based)")
