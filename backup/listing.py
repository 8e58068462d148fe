"""``n8n-backup list``: what a backup root holds, one line per snapshot, or JSON for scripts.

A snapshot whose manifest cannot be read, or whose ``created`` is not an ISO time with a timezone,
is listed as a row with its problem, never skipped and never a crash; so is an interrupted
snapshot (a ``.incomplete-*`` folder). Text output escapes every non-printable character: manifest
fields and folder names may hold terminal escape sequences.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup.errors import InputError, SnapshotError
from backup.manifest import Manifest, find_snapshots, parse_created
from backup.snapshot import INCOMPLETE_PREFIX
from backup.verification_record import read_record

# A snapshot created further ahead than this (clock skew aside) has a wrong clock or a forged date.
FUTURE_TOLERANCE = timedelta(hours=1)
FUTURE_PROBLEM = "created in the future"
INVALID_CREATED = "invalid manifest: created is not an ISO time with a timezone"

STATE_OK = "ok"
STATE_FUTURE = "future"
STATE_INVALID = "invalid"
STATE_INCOMPLETE = "incomplete"


def printable(text: str) -> str:
    """``text`` with every non-printable character (terminal escapes, newlines) as ``\\xNN``."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def created_time(value: object) -> datetime | None:
    """A manifest's ``created`` as an aware datetime, or None if it is not an ISO time with a
    timezone (any JSON value may be there: a word, a number, null, a time without offset)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_created(value)
    except ValueError:
        return None


def load_dated(folder: Path) -> tuple[Manifest, datetime]:
    """The folder's manifest and its creation time; SnapshotError says why either is unusable."""
    try:
        manifest = Manifest.load(folder)
    except (SnapshotError, OSError) as exc:
        raise SnapshotError(f"unreadable manifest: {exc}") from None
    created = created_time(manifest.created)
    if created is None:
        raise SnapshotError(INVALID_CREATED)
    return manifest, created


@dataclass(frozen=True)
class IncompleteFolder:
    """An interrupted snapshot: a ``.incomplete-*`` folder directly inside the backup root."""

    path: Path
    size_bytes: int
    # Since the last write anywhere in it: a big database copy grows long after the folder's
    # own mtime was set.
    age: timedelta


def _usage(folder: Path) -> tuple[int, float]:
    """Bytes of the regular files under ``folder`` (links not followed) and the newest mtime."""
    size = 0
    newest = folder.lstat().st_mtime
    for parent, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:
                continue  # removed while we looked
            newest = max(newest, info.st_mtime)
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
    return size, newest


def find_incomplete(root: Path, now: datetime) -> list[IncompleteFolder]:
    """``.incomplete-*`` folders directly under ``root``, by name; links and files are ignored."""
    found = []
    for child in sorted(root.iterdir()):
        if not child.name.startswith(INCOMPLETE_PREFIX) or child.is_symlink() or not child.is_dir():
            continue
        try:
            size, newest = _usage(child)
        except OSError:
            continue  # renamed into a complete snapshot, or removed, since iterdir
        found.append(IncompleteFolder(child, size, now - datetime.fromtimestamp(newest, UTC)))
    return found


@dataclass(frozen=True)
class SnapshotListing:
    """One snapshot as ``list`` shows it; fields the manifest could not give are None."""

    snapshot_id: str  # the folder's name when there is no readable manifest
    path: str
    created: str | None
    age_hours: float | None
    size_bytes: int | None
    workflows: int | None
    credentials: int | None
    executions: int | None
    source_n8n_version: str | None
    database: str | None
    last_verification: str  # PASSED / FAILED / PARTIAL / never
    verified_at: str | None
    state: str = STATE_OK  # ok / future / invalid / incomplete
    problem: str | None = None
    # Why the last verification failed, per target ("2.40.7: test_boot: ..."), from its record.
    verification_causes: list[str] = field(default_factory=list)


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _declared_size(manifest: Manifest) -> int:
    return sum(
        entry.size
        for entry in manifest.files
        if isinstance(entry.size, int) and not isinstance(entry.size, bool)
    )


def _snapshot_row(folder: Path, moment: datetime) -> SnapshotListing:
    record = read_record(folder)
    verification = record.outcome if record else "never"
    verified_at = record.verified_at if record else None
    try:
        manifest, created = load_dated(folder)
    except SnapshotError as exc:
        try:
            size: int | None = _usage(folder)[0]
        except OSError:
            size = None
        return SnapshotListing(
            snapshot_id=folder.name,
            path=str(folder),
            created=None,
            age_hours=None,
            size_bytes=size,
            workflows=None,
            credentials=None,
            executions=None,
            source_n8n_version=None,
            database=None,
            last_verification=verification,
            verified_at=verified_at,
            state=STATE_INVALID,
            problem=str(exc),
        )
    future = created - moment > FUTURE_TOLERANCE
    causes = [
        f"{target.target_version}: {cause}"
        for target in (record.targets if record else [])
        for cause in target.causes
    ]
    return SnapshotListing(
        snapshot_id=manifest.snapshot_id,
        path=str(folder),
        created=manifest.created,
        age_hours=_hours(moment - created),
        size_bytes=_declared_size(manifest),
        workflows=manifest.counts.workflows,
        credentials=manifest.counts.credentials,
        executions=manifest.counts.executions,
        source_n8n_version=manifest.source_n8n_version,
        database=manifest.database_kind,
        last_verification=verification,
        verified_at=verified_at,
        state=STATE_FUTURE if future else STATE_OK,
        problem=FUTURE_PROBLEM if future else None,
        verification_causes=causes,
    )


def _incomplete_row(item: IncompleteFolder) -> SnapshotListing:
    hours = _hours(item.age)
    return SnapshotListing(
        snapshot_id=item.path.name,
        path=str(item.path),
        created=None,
        age_hours=hours,
        size_bytes=item.size_bytes,
        workflows=None,
        credentials=None,
        executions=None,
        source_n8n_version=None,
        database=None,
        last_verification="never",
        verified_at=None,
        state=STATE_INCOMPLETE,
        problem=(
            f"incomplete (interrupted snapshot), {item.size_bytes} bytes, {format_age(hours)} old"
        ),
    )


def list_snapshots(root: Path, now: datetime | None = None) -> list[SnapshotListing]:
    """Every snapshot under ``root``, oldest first, then the interrupted ones; a snapshot with
    an unusable manifest is a row with its ``problem``, not a reason to stop."""
    if not root.is_dir():
        raise InputError(f"backup root {root} is not a folder: give the folder of snapshots")
    moment = now or datetime.now(UTC)
    rows = [_snapshot_row(folder, moment) for folder in find_snapshots(root)]
    rows += [_incomplete_row(item) for item in find_incomplete(root, moment)]
    return rows


def format_age(hours: float) -> str:
    """``5h`` under two days, ``12d`` beyond."""
    return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"


def format_size(size: int) -> str:
    """Bytes in B, KB, MB or GB."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def _cell(value: object) -> str:
    return "-" if value is None else printable(str(value))


def format_listings(listings: list[SnapshotListing], as_json: bool) -> str:
    """Text for people (aligned columns, escaped) or JSON for scripts (escaped by json)."""
    if as_json:
        # ensure_ascii (the default) writes every control character as \\uNNNN.
        return json.dumps([asdict(item) for item in listings], indent=2, ensure_ascii=True)
    ids = [_cell(item.snapshot_id) for item in listings]
    width = max([24, *(len(text) for text in ids)])
    header = (
        f"{'SNAPSHOT':<{width}} {'AGE':>5} {'SIZE':>8} {'WF':>5} {'CRED':>5} {'EXEC':>6} "
        f"{'N8N':<9} {'DB':<8} {'VERIFIED':<8} STATE"
    )
    rows = [
        f"{snapshot_id:<{width}} "
        f"{'-' if item.age_hours is None else format_age(item.age_hours):>5} "
        f"{'-' if item.size_bytes is None else format_size(item.size_bytes):>8} "
        f"{_cell(item.workflows):>5} {_cell(item.credentials):>5} {_cell(item.executions):>6} "
        f"{_cell(item.source_n8n_version):<9} {_cell(item.database):<8} "
        f"{_cell(item.last_verification):<8} {_cell(item.problem or item.state)}"
        for snapshot_id, item in zip(ids, listings, strict=True)
    ]
    return "\n".join([header, *rows]) if rows else "no snapshots"
