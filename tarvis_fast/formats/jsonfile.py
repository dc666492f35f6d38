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
