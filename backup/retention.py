"""Retention: which snapshots to keep. ``apply_policy`` is pure; ``prune`` acts on a folder.

Rules that hold whatever the policy says:
- the newest snapshot that passed verification is always kept;
- the newest snapshot of all is always kept;
- only snapshot folders directly inside the backup root are ever deleted, never through a link;
- key-store entries are never deleted (a key may serve snapshots kept elsewhere).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from backup.errors import InputError, SnapshotError
from backup.manifest import Manifest, find_snapshots
from backup.verification_record import read_record, record_path


@dataclass(frozen=True)
class RetentionPolicy:
    """How far back to keep one snapshot per day, per ISO week and per month."""

    keep_daily: int = 30
    keep_weekly: int = 13  # about 90 days
    keep_monthly: int = 0


@dataclass(frozen=True)
class SnapshotInfo:
    """What the policy needs to know about a snapshot."""

    name: str
    created: datetime
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
    """Decide what to keep and what to remove; no I/O."""
    reasons: dict[str, list[str]] = {}
    for key, count, unit in (
        ("daily", policy.keep_daily, timedelta(days=1)),
        ("weekly", policy.keep_weekly, timedelta(weeks=1)),
        ("monthly", policy.keep_monthly, timedelta(days=31)),
    ):
        if count > 0:
            for name, why in _bucket_keeps(snapshots, now, unit * count, key).items():
                reasons.setdefault(name, []).append(why)
    if snapshots:
        newest = max(snapshots, key=lambda s: s.created)
        reasons.setdefault(newest.name, []).append("newest")
    verified = [s for s in snapshots if s.verified_ok]
    if verified:
        newest_ok = max(verified, key=lambda s: s.created)
        reasons.setdefault(newest_ok.name, []).append("newest verified")
    keep = [s for s in snapshots if s.name in reasons]
    remove = [s for s in snapshots if s.name not in reasons]
    return Decision(keep, remove, reasons)


def _infos(root: Path) -> dict[str, tuple[Path, SnapshotInfo]]:
    infos: dict[str, tuple[Path, SnapshotInfo]] = {}
    for folder in find_snapshots(root):
        if folder.is_symlink() or folder.parent != root:
            continue  # never delete through a link or outside the root
        try:
            manifest = Manifest.load(folder)
        except SnapshotError:
            continue  # not ours to judge
        record = read_record(folder)
        info = SnapshotInfo(
            folder.name,
            datetime.fromisoformat(manifest.created),
            bool(record and record.passed),
        )
        infos[folder.name] = (folder, info)
    return infos


def prune(root: Path, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Decision:
    """Apply ``policy`` to the snapshots directly under ``root``; delete unless ``dry_run``."""
    if not root.is_dir() or root.is_symlink():
        raise InputError(f"backup root {root} is not a folder (links are not followed)")
    root = root.resolve()
    infos = _infos(root)
    decision = apply_policy([info for _, info in infos.values()], policy, now)
    if not dry_run:
        for info in decision.remove:
            folder = infos[info.name][0]
            shutil.rmtree(folder)
            record_path(folder).unlink(missing_ok=True)
    return decision
