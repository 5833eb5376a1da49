"""Small file helpers: every file the package writes for a user goes through a temporary file and `os.replace`,
so an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def default_mode(path: str | Path) -> None:
    """Give `path` the mode a plain `open()` or `mkdir` would have (0o666 / 0o777 less the umask): `mkstemp` and
    `mkdtemp` create owner-only files and folders, which would make saved weights unreadable to anyone else (a
    shared group, a web server, a later `docker` user) once renamed into place."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` through a temporary file in the same folder, renamed into place."""
    return atomic_write_bytes(path, text.encode(encoding))


def safetensors_header(path: str | Path) -> dict:
    """The header of a safetensors file (tensor name -> dtype, shape, data_offsets), read without the data.
    Raises `ValueError` naming the file when the file is not whole: an unreadable header, or data cut short (a kill
    or a full disk while it was written)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        if size < 8 or not 0 < header_size <= size - 8:
            raise ValueError(f"{path} is not a whole safetensors file: no readable header ({size} bytes).")
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a whole safetensors file: its header is not readable.")
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size < 8 + header_size + end:
        raise ValueError(
            f"{path} is cut short ({size} of {8 + header_size + end} bytes): it was not written to the end. "
            "Save the model again."
        )
    return header
