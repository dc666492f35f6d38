"""`run.json`: what produced the results in an output folder, and whether they are complete.

    write_run_record(output_dir, {"checkpoint": ..., "dataset": ...}, complete=False)   # before the first result
    run, complete = read_run_record(output_dir)                                           # None: no record

The command lines write it before their first result and compare it on a re-run, so that results of two different
runs are never mixed in one folder (a differing record is refused unless the user asks to overwrite).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tarvis_fast.formats.atomic import atomic_open
from tarvis_fast.formats.jsonfile import json_field, read_json

RUN_JSON = "run.json"


def write_run_record(output_dir: Path, run: Mapping[str, Any], *, complete: bool) -> None:
    """`output_dir/run.json`: `run` (JSON-serialisable: what produced the outputs) and whether every output is
    written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(output_dir / RUN_JSON, "w") as handle:
        json.dump({"run": run, "complete": complete}, handle, indent=1)


def read_run_record(output_dir: Path) -> tuple[dict[str, Any], bool] | None:
    """(run, complete) from `output_dir/run.json`, or None where there is none."""
    path = output_dir / RUN_JSON
    if not path.exists():
        return None
    content = read_json(path)
    run, complete = json_field(content, "run", str(path)), json_field(content, "complete", str(path))
    if not isinstance(run, dict) or not isinstance(complete, bool):
        raise ValueError(f"{path}: expected {{\"run\": {{...}}, \"complete\": true|false}}")
    return run, complete


def differing_keys(run: Mapping[str, Any], previous: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two run records."""
    return sorted(key for key in run.keys() | previous.keys() if run.get(key) != previous.get(key))
