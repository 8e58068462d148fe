"""Temporary folders that name the process they belong to, and the removal of those whose
process is gone: a run killed outright (SIGKILL, the OOM killer) cannot remove its restored
copy (the data and the key), its n8n log or the snapshots and keys it fetched; the next run
does."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from backup.processes import started

OWNER_NAME = ".owner"
RESTORE_PREFIX = "n8n-restore-"
LOG_PREFIX = "n8n-log-"
FETCH_PREFIX = "n8n-verify-repo-"
OWNED_PREFIXES = (RESTORE_PREFIX, LOG_PREFIX, FETCH_PREFIX)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _this_process() -> dict[str, Any]:
    """This process, as another one can tell whether it still runs: its pid and start time,
    the boot they belong to, and the pid namespace they mean something in."""
    return {
        "pid": os.getpid(),
        "started": started(os.getpid()),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": _pid_namespace(),
    }


def claim(folder: Path) -> None:
    """Mark ``folder`` (just made, private) as this process's."""
    marker = folder / OWNER_NAME
    marker.write_text(json.dumps(_this_process()), encoding="utf-8")
    marker.chmod(0o600)


def owned_temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary folder, claimed by this process."""
    folder = tempfile.TemporaryDirectory(prefix=prefix)
    claim(Path(folder.name))
    return folder


def _owner_gone(folder: Path) -> bool:
    """Whether the process that claimed ``folder`` is certainly gone. A folder without a
    readable claim, or claimed in another pid namespace (a container sharing /tmp), is never
    taken for abandoned."""
    try:
        owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
        pid, when = int(owner["pid"]), int(owner["started"])
        boot, namespace = owner.get("boot"), owner.get("pid_namespace")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False
    if namespace is None or namespace != _pid_namespace():
        return False
    if boot is not None and boot != _read("/proc/sys/kernel/random/boot_id"):
        return True  # claimed before this machine last started
    return started(pid) != when


def _writable_again(function: Any, path: str, _: Any) -> None:
    """rmtree's error handler: a folder unpacked read-only is made writable, then retried."""
    parent = os.path.dirname(path)
    os.chmod(parent, stat.S_IRWXU)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    function(path)


def _remove(folder: Path) -> None:
    """Everything in ``folder``, then its claim, then the folder: one that cannot be removed
    whole keeps its claim, and the next run tries again."""
    for entry in folder.iterdir():
        if entry.name == OWNER_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink() and sys.version_info >= (3, 12):
            shutil.rmtree(entry, onexc=_writable_again)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, onerror=_writable_again)
        else:
            entry.unlink()
    (folder / OWNER_NAME).unlink()
    folder.rmdir()


def remove_abandoned(temp_dir: Path | None = None) -> list[str]:
    """Remove the claimed folders in the temporary folder (``temp_dir``, the system's by
    default) whose process is gone; links, other users' folders and folders whose owner may
    still run are left alone. Returns one line per folder: removed, or why not."""
    said = []
    root = temp_dir or Path(tempfile.gettempdir())
    for folder in sorted(p for prefix in OWNED_PREFIXES for p in root.glob(f"{prefix}*")):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _owner_gone(folder):
            continue
        try:
            _remove(folder)
        except OSError as exc:
            said.append(f"cannot remove {folder}, left by a run that was killed: {exc}")
        else:
            said.append(f"removed {folder}, left by a verify run that was killed")
    return said
