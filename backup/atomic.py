"""Atomic, private file writes: temporary name, fsync, rename; folders 0700, files 0600; a
private copy hashed as it is written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_COPY_CHUNK = 1 << 20  # measured on a 1 GB file: 4 and 16 MiB chunks copied slower


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write UTF-8 text atomically; see :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def fsync_file(path: Path) -> None:
    """Flush one file's content to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def new_private_file(path: Path) -> int:
    """Create ``path`` as a new, empty 0600 file (refused if anything is there); its descriptor,
    open for writing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)


def reserve_new_file(folder: Path, stem: str, suffix: str) -> Path:
    """Create ``<stem><suffix>`` in ``folder`` as a new, empty 0600 file, or ``<stem>-2<suffix>``
    and so on when that name is taken (two runs that started in the same second); its path."""
    number = 1
    while True:
        path = folder / (f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}")
        try:
            os.close(new_private_file(path))
        except FileExistsError:
            number += 1
            continue
        return path


def copy_hashed(source: BinaryIO, destination: Path) -> str:
    """Copy an open file to a new private file (0600, refused if it exists) and return the
    sha256 of what was written, from the same read: each chunk is hashed in a second thread
    while it is written (hashlib releases the GIL), so the hash costs little beyond the copy."""
    hasher = hashlib.sha256()
    with (
        ThreadPoolExecutor(1) as hashing,
        open(new_private_file(destination), "wb") as out,
    ):  # writes every byte
        pending: Future[None] | None = None
        while chunk := source.read(_COPY_CHUNK):
            if pending is not None:
                pending.result()
            pending = hashing.submit(hasher.update, chunk)
            out.write(chunk)
        if pending is not None:
            pending.result()
    return hasher.hexdigest()
