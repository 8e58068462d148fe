"""One n8n-backup at a time per n8n data folder: snapshot and restore take an exclusive lock.

The lock is a file in n8n's data folder (where the restore keeps its rollback copies too), held
with flock for the whole operation and released by the kernel when the process ends, however
it ends: a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from backup.errors import InputError

LOCK_NAME = ".n8n-backup.lock"


@contextlib.contextmanager
def exclusive(data_folder: Path, what: str) -> Iterator[None]:
    """Hold the folder's lock for ``what`` (a snapshot, a restore); refuse at once if held."""
    path = data_folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise InputError(f"cannot lock {data_folder} ({exc.strerror}): run as its owner") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another n8n-backup is working on {data_folder} (lock {path}): wait for it "
                f"to finish, then run the {what} again; nothing was changed"
            ) from None
        yield
    finally:
        os.close(fd)
