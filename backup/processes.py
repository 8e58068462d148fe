"""What Linux's /proc says of processes: when one started, and which are another's children."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _stat_fields(stat_file: Path) -> list[str] | None:
    """The fields of a /proc/PID/stat file after the command name (which may hold spaces and
    parentheses): state, parent, ...; None when the process is gone."""
    try:
        return stat_file.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is no such
    process: with the pid, it names a process even after pids are reused."""
    fields = _stat_fields(PROC / str(pid) / "stat")
    try:
        return None if fields is None else int(fields[19])
    except (IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (none where there is no /proc)."""
    found = []
    for stat_file in PROC.glob("[0-9]*/stat"):
        fields = _stat_fields(stat_file)
        if fields is not None and len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat_file.parent.name))
    return found
