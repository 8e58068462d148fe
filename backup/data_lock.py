"""One n8n-backup at a time per n8n data folder: snapshot and restore take an exclusive lock.

The lock is flock on the data folder itself (nothing is written, so a read-only folder can
still be snapshotted), held for the whole operation and released by the kernel when the
process ends, however it ends: a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from backup.errors import InputError


@contextlib.contextmanager
def exclusive(data_folder: Path, what: str) -> Iterator[None]:
    """Hold the folder's lock for ``what`` (a snapshot, a restore); refuse at once if held."""
    try:
        fd = os.open(data_folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InputError(f"cannot lock {data_folder} ({exc.strerror}): run as its owner") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another n8n-backup is working on {data_folder}: wait for it to finish, then "
                f"run the {what} again; nothing was changed"
            ) from None
        yield
    finally:
        os.close(fd)
