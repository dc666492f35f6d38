"""Atomic file writes: a reader never sees a half-written file, and a failed write leaves no debris.

    with atomic_open(path, "w") as handle: ...          # a file object
    pending = PendingFile(path); writer(pending.tmp); pending.commit()   # writers that want a file name (cv2)
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class PendingFile:
    """A temporary file beside `path` (same folder, so the final move is atomic), for writers that take a file
    name: write `tmp`, then `commit()` moves it to `path` (os.replace) or `discard()` deletes it.

    The parent folder must exist. `tmp` keeps `path`'s suffix, which some writers read the format from.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=self.path.suffix)
        os.close(fd)
        self.tmp = Path(tmp)

    @staticmethod
    def leftovers(path: str | os.PathLike) -> list[Path]:
        """Temporary files that pending writes of `path` left behind when their process was killed (an exception
        discards them itself). The name of `path` may be a glob pattern ("masks/*.png")."""
        path = Path(path)
        return sorted(path.parent.glob(f".{path.stem}.*{path.suffix}"))

    def commit(self) -> Path:
        os.chmod(self.tmp, 0o666 & ~_current_umask())  # mkstemp makes it private (0600); give it open()'s mode
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on a clean exit it replaces `path`, on an exception it
    is deleted.

    `mode` is "w" (text, UTF-8) or "wb". The parent folder must exist.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    pending = PendingFile(path)
    try:
        with open(pending.tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def _current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; restore at once
    os.umask(mask)
    return mask
