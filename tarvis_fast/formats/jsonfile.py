"""Reading a JSON file with errors that name it."""
from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, hint: str = "") -> Any:
    """The parsed content of `path`. A missing file raises FileNotFoundError and invalid JSON `error`, both
    naming the path; `hint` is appended to the message (e.g. which flag sets the path)."""
    suffix = f"; {hint}" if hint else ""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found{suffix}") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err}){suffix}") from None


def json_field(entry: Any, key: str, where: str, error: type[Exception] = ValueError) -> Any:
    """`entry[key]` of a JSON object; `error` naming `where` and the key when `entry` is no object or lacks it."""
    if not isinstance(entry, dict) or key not in entry:
        raise error(f"{where}: missing field {key!r}")
    return entry[key]


def json_list(entry: Any, key: str, where: str, error: type[Exception] = ValueError) -> list:
    """`entry[key]`, which must be a non-empty list."""
    value = json_field(entry, key, where, error)
    if not isinstance(value, list) or not value:
        raise error(f"{where}: {key!r} must be a non-empty list")
    return value


def json_image_size(entry: Any, where: str, error: type[Exception] = ValueError) -> tuple[int, int]:
    """(height, width) from an entry's "height" and "width", which must be positive integers."""
    height, width = json_field(entry, "height", where, error), json_field(entry, "width", where, error)
    try:
        height, width = int(height), int(width)
    except (TypeError, ValueError):
        raise error(f"{where}: height and width must be integers") from None
    if height < 1 or width < 1:
        raise error(f"{where}: height and width must be positive, got {height}x{width}")
    return height, width
