"""What a run leaves behind when it is killed outright (SIGKILL, the OOM killer): it cannot
remove its restored copy (the data and the key), its n8n log or the snapshots and keys it
fetched, nor its throwaway database or its containers; the next run does. Each such thing
names the process it belongs to (an owner record); this module writes and judges those
records, and removes the temporary folders whose process is gone."""

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
RESTORE_FETCH_PREFIX = "n8n-backup-fetch-"  # a stored snapshot fetched to be restored
KEYS_FETCH_PREFIX = "n8n-keys-"  # a key store fetched from a repository
OWNED_PREFIXES = (RESTORE_PREFIX, LOG_PREFIX, FETCH_PREFIX, RESTORE_FETCH_PREFIX, KEYS_FETCH_PREFIX)


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


def _boot() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


def _machine() -> str | None:
    return _read("/etc/machine-id")


def _this_process() -> dict[str, Any]:
    """This process, as another one can tell whether it still runs: its pid and start time,
    the boot and machine they belong to, and the pid namespace they mean something in."""
    return {
        "pid": os.getpid(),
        "started": started(os.getpid()),
        "boot": _boot(),
        "machine": _machine(),
        "pid_namespace": _pid_namespace(),
    }


def owner_record() -> str:
    """This process's owner record (JSON), for what it makes and must remove again."""
    return json.dumps(_this_process(), sort_keys=True)


def claim(folder: Path) -> None:
    """Mark ``folder`` (just made, private) as this process's."""
    marker = folder / OWNER_NAME
    marker.write_text(owner_record(), encoding="utf-8")
    marker.chmod(0o600)


def owned_temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary folder, claimed by this process."""
    folder = tempfile.TemporaryDirectory(prefix=prefix)
    claim(Path(folder.name))
    return folder


def _whole_number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _certainly_gone(pid: int, when: int) -> bool:
    """Whether process ``pid`` that started at ``when`` is gone: another process has the pid
    now, or none has. A process this one may not see (/proc mounted with hidepid, systemd's
    ProtectProc) still runs as far as we know."""
    if pid <= 0:
        return False
    now = started(pid)
    if now is not None:
        return now != when
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False  # there, and another user's (or no pid at all)
    return False  # there, but its start time cannot be read


def _gone(record: str, *, earlier_boot_is_gone: bool) -> bool:
    """Whether the process of an owner record certainly no longer runs. Judged only when this
    machine's boot is known and the record was made in this pid namespace (a pid means nothing
    in another); a garbled record is never taken for gone."""
    try:
        owner = json.loads(record)
        pid, when = _whole_number(owner["pid"]), _whole_number(owner["started"])
        boot, namespace = owner.get("boot"), owner.get("pid_namespace")
        machine = owner.get("machine")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return False
    this_boot = _boot()
    if pid is None or when is None or boot is None or this_boot is None:
        return False
    if namespace is None or namespace != _pid_namespace():
        return False
    if boot != this_boot:
        # Made before this machine last started, when the record sits in its temporary folder
        # and names this machine (a folder shared over the network may hold other machines');
        # on a server or engine others share, possibly another machine's.
        return earlier_boot_is_gone and machine is not None and machine == _machine()
    return _certainly_gone(pid, when)


def owner_gone(record: str) -> bool:
    """Whether the process of ``record`` (:func:`owner_record`), kept on a server or engine
    that other machines may share (a database's comment, a container's label), certainly no
    longer runs: only records made on this machine since it last started, in this pid
    namespace, are judged (a pid means nothing elsewhere); the others are never gone."""
    return _gone(record, earlier_boot_is_gone=False)


def _owner_gone(folder: Path) -> bool:
    """Whether the process that claimed ``folder`` is certainly gone. A folder without a
    readable claim, or claimed in another pid namespace (a container sharing /tmp), is never
    taken for abandoned; one claimed on this machine before it last started always is."""
    try:
        record = (folder / OWNER_NAME).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    return _gone(record, earlier_boot_is_gone=True)


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
            said.append(f"removed {folder}, left by a run that was killed")
    return said
