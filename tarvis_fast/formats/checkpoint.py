"""The container of a `.pth` checkpoint, checked without torch: `torch.save` writes a zip archive holding
`<name>/data.pkl` (PyTorch >= 1.6) or, in the legacy format, a bare pickle stream.

`check_checkpoint_file` is what a command line calls before importing torch, so that a wrong path, an empty or
truncated download or a file that is no checkpoint at all is reported at once, naming the file, instead of as
an unpickling error after the model is built.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80  # first byte of a pickle of protocol >= 2, which the legacy torch.save writes


def check_checkpoint_file(path: str | os.PathLike) -> None:
    """Raise naming `path` if it is missing, empty, or not a readable torch zip archive or pickle.

    A zip archive's central directory sits at its end, so reading it catches truncation; the tensors themselves
    are not read (that would mean reading the whole file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise ValueError(f"{path}: the checkpoint is not a file")
    with open(path, "rb") as handle:  # an unreadable file raises PermissionError, naming it
        head = handle.read(4)
    if not head:
        raise ValueError(f"{path}: the checkpoint is empty (0 bytes)")
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as err:
            raise ValueError(f"{path}: truncated or corrupt checkpoint (zip archive unreadable: {err})") from None
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            raise ValueError(f"{path}: a zip archive, but not a PyTorch checkpoint (no data.pkl inside)")
        return
    if head[0] != PICKLE_PROTO:
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
