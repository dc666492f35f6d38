"""atomic_open: all or nothing, with the permissions a plain open() would give."""
import os

import pytest

from tarvis_fast.formats.atomic import atomic_open


def test_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as handle:
        handle.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "wb") as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert target.read_text() == "first" and os.listdir(tmp_path) == ["out.txt"]


def test_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "a.bin", "wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(tmp_path / "b", "a"):
            pass
