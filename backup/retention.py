"""Retention: which snapshots to keep. ``apply_policy`` is pure; ``prune`` acts on a folder.

Rules that hold whatever the policy says:
- the newest snapshot that passed verification is always kept;
- the newest snapshot of all is always kept;
- a snapshot created in the future (beyond a tolerance for clock skew) is kept, and neither takes
  "newest" nor counts in a day, week or month;
- a snapshot whose manifest cannot be read, or whose ``created`` is not an ISO time with a
  timezone, is not ours to judge: it is kept, and the output says why;
- an interrupted snapshot (``.incomplete-*``) is removed once nothing was written into it for
  ``INCOMPLETE_MAX_AGE``; a newer one may be being written right now;
- only folders directly inside the backup root are ever deleted, never through a link;
- key-store entries are never deleted (a key may serve snapshots kept elsewhere).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from backup.errors import InputError, SnapshotError
from backup.listing import (
    FUTURE_PROBLEM,
    FUTURE_TOLERANCE,
    IncompleteFolder,
    find_incomplete,
    format_age,
    load_dated,
    printable,
)
from backup.manifest import find_snapshots
from backup.verification_record import read_record, record_path

INCOMPLETE_MAX_AGE = timedelta(hours=24)


def non_negative_int(text: str) -> int:
    """argparse type for the --keep-* counts: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more (not {text!r})")
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    """How far back to keep one snapshot per day, per ISO week and per month."""

    keep_daily: int = 30
    keep_weekly: int = 13  # about 90 days
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        counts = (self.keep_daily, self.keep_weekly, self.keep_monthly)
        if any(count < 0 for count in counts):
            raise InputError(f"retention counts must be 0 or more, not {counts}")


@dataclass(frozen=True)
class SnapshotInfo:
    """What the policy needs to know about a snapshot."""

    name: str
    created: datetime  # timezone-aware
    verified_ok: bool


@dataclass(frozen=True)
class Decision:
    """The policy's verdict, with why each kept snapshot is kept."""

    keep: list[SnapshotInfo]
    remove: list[SnapshotInfo]
    reasons: dict[str, list[str]]


def _bucket_keeps(
    snapshots: list[SnapshotInfo], now: datetime, span: timedelta, key: str
) -> dict[str, str]:
    """Newest snapshot per period (day, week, month) within ``span`` of ``now``."""
    chosen: dict[str, str] = {}
    for snapshot in sorted(snapshots, key=lambda s: s.created, reverse=True):
        if now - snapshot.created > span:
            continue
        created = snapshot.created
        if key == "daily":
            period = created.strftime("%Y-%m-%d")
        elif key == "weekly":
            year, week, _ = created.isocalendar()
            period = f"{year}-W{week:02d}"
        else:
            period = created.strftime("%Y-%m")
        chosen.setdefault(period, snapshot.name)
    return {name: key for name in chosen.values()}


def apply_policy(snapshots: list[SnapshotInfo], policy: RetentionPolicy, now: datetime) -> Decision:
    """Decide what to keep and what to remove; no I/O. Names are unique, times aware."""
    reasons: dict[str, list[str]] = {}
    future = {s.name for s in snapshots if s.created - now > FUTURE_TOLERANCE}
    for name in future:
        reasons[name] = [FUTURE_PROBLEM]
    judged = [s for s in snapshots if s.name not in future]
    for key, count, unit in (
        ("daily", policy.keep_daily, timedelta(days=1)),
        ("weekly", policy.keep_weekly, timedelta(weeks=1)),
        ("monthly", policy.keep_monthly, timedelta(days=31)),
    ):
        if count > 0:
            for name, why in _bucket_keeps(judged, now, unit * count, key).items():
                reasons.setdefault(name, []).append(why)
    if judged:
        newest = max(judged, key=lambda s: s.created)
        reasons.setdefault(newest.name, []).append("newest")
    verified = [s for s in judged if s.verified_ok]
    if verified:
        newest_ok = max(verified, key=lambda s: s.created)
        reasons.setdefault(newest_ok.name, []).append("newest verified")
    keep = [s for s in snapshots if s.name in reasons]
    remove = [s for s in snapshots if s.name not in reasons]
    return Decision(keep, remove, reasons)


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` did (or, with ``dry_run``, would do)."""

    decision: Decision
    # Snapshot folders left alone because their manifest cannot be judged, and why.
    unjudged: dict[str, str] = field(default_factory=dict)
    incomplete_removed: list[IncompleteFolder] = field(default_factory=list)
    incomplete_kept: list[IncompleteFolder] = field(default_factory=list)

    def report(self, *, dry_run: bool) -> list[str]:
        """One line per folder: ``removed X``, ``would remove X``, ``keep X (why)``.

        Nothing is printed raw: folder names may hold terminal escapes.
        """
        verb = "would remove" if dry_run else "removed"
        lines = [f"{verb} {printable(info.name)}" for info in self.decision.remove]
        lines += [
            f"{verb} {printable(item.path.name)} (interrupted snapshot, {item.size_bytes} bytes, "
            f"last written {_ago(item)} ago)"
            for item in self.incomplete_removed
        ]
        lines += [
            f"keep {printable(info.name)} ({', '.join(self.decision.reasons[info.name])})"
            for info in self.decision.keep
        ]
        lines += [
            f"keep {printable(name)} ({printable(why)})" for name, why in self.unjudged.items()
        ]
        lines += [
            f"keep {printable(item.path.name)} (interrupted snapshot, last written {_ago(item)} "
            "ago: it may still be being written)"
            for item in self.incomplete_kept
        ]
        return lines


def _ago(item: IncompleteFolder) -> str:
    return format_age(item.age.total_seconds() / 3600)


def _infos(root: Path) -> tuple[dict[str, tuple[Path, SnapshotInfo]], dict[str, str]]:
    """The judgeable snapshots directly in ``root``, and the others with why they are not."""
    infos: dict[str, tuple[Path, SnapshotInfo]] = {}
    unjudged: dict[str, str] = {}
    for folder in find_snapshots(root):
        if folder.is_symlink() or folder.parent != root:
            continue  # never delete through a link or outside the root
        try:
            _, created = load_dated(folder)
        except SnapshotError as exc:
            unjudged[folder.name] = str(exc)  # not ours to judge
            continue
        record = read_record(folder)
        infos[folder.name] = (
            folder,
            SnapshotInfo(folder.name, created, bool(record and record.passed)),
        )
    return infos, unjudged


def _remove_incomplete(root: Path, item: IncompleteFolder) -> None:
    folder = item.path
    if folder.parent != root or folder.is_symlink():
        return
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass  # gone meanwhile
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SnapshotError(
            f"cannot remove the interrupted snapshot {printable(str(folder))}: {reason}"
        ) from None


def prune(root: Path, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> PruneResult:
    """Apply ``policy`` to the snapshots directly under ``root`` and clear interrupted ones older
    than ``INCOMPLETE_MAX_AGE``; delete nothing with ``dry_run``."""
    if not root.is_dir() or root.is_symlink():
        raise InputError(f"backup root {root} is not a folder (links are not followed)")
    root = root.resolve()
    infos, unjudged = _infos(root)
    decision = apply_policy([info for _, info in infos.values()], policy, now)
    incomplete = find_incomplete(root, now)
    stale = [item for item in incomplete if item.age > INCOMPLETE_MAX_AGE]
    fresh = [item for item in incomplete if item.age <= INCOMPLETE_MAX_AGE]
    if not dry_run:
        for info in decision.remove:
            folder = infos[info.name][0]
            shutil.rmtree(folder)
            record_path(folder).unlink(missing_ok=True)
        for item in stale:
            _remove_incomplete(root, item)
    return PruneResult(decision, unjudged, stale, fresh)
