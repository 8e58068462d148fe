"""``n8n-backup list``: what a backup root holds, one line per snapshot, or JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup.errors import InputError, SnapshotError
from backup.manifest import Manifest, find_snapshots
from backup.verification_record import read_record


@dataclass(frozen=True)
class SnapshotListing:
    """One snapshot as ``list`` shows it."""

    snapshot_id: str
    path: str
    created: str
    age_hours: float
    size_bytes: int
    workflows: int
    credentials: int
    executions: int
    source_n8n_version: str
    database: str
    last_verification: str  # PASSED / FAILED / never
    verified_at: str | None


def list_snapshots(root: Path, now: datetime | None = None) -> list[SnapshotListing]:
    """Every snapshot under ``root``, oldest first; unreadable ones are skipped."""
    if not root.is_dir():
        raise InputError(f"backup root {root} is not a folder: give the folder of snapshots")
    moment = now or datetime.now(UTC)
    listings = []
    for folder in find_snapshots(root):
        try:
            manifest = Manifest.load(folder)
        except SnapshotError:
            continue
        record = read_record(folder)
        created = datetime.fromisoformat(manifest.created)
        listings.append(
            SnapshotListing(
                snapshot_id=manifest.snapshot_id,
                path=str(folder),
                created=manifest.created,
                age_hours=round((moment - created).total_seconds() / 3600, 1),
                size_bytes=sum(entry.size for entry in manifest.files),
                workflows=manifest.counts.workflows,
                credentials=manifest.counts.credentials,
                executions=manifest.counts.executions,
                source_n8n_version=manifest.source_n8n_version,
                database=manifest.database_kind,
                last_verification=("PASSED" if record.passed else "FAILED") if record else "never",
                verified_at=record.verified_at if record else None,
            )
        )
    return listings


def _age(hours: float) -> str:
    return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def format_listings(listings: list[SnapshotListing], as_json: bool) -> str:
    """Text for people (aligned columns) or JSON for scripts."""
    if as_json:
        return json.dumps([asdict(item) for item in listings], indent=2)
    header = (
        f"{'SNAPSHOT':<24} {'AGE':>5} {'SIZE':>8} {'WF':>5} {'CRED':>5} {'EXEC':>6} "
        f"{'N8N':<9} {'DB':<8} VERIFIED"
    )
    rows = [
        f"{item.snapshot_id:<24} {_age(item.age_hours):>5} {_size(item.size_bytes):>8} "
        f"{item.workflows:>5} {item.credentials:>5} {item.executions:>6} "
        f"{item.source_n8n_version:<9} {item.database:<8} {item.last_verification}"
        for item in listings
    ]
    return "\n".join([header, *rows]) if rows else "no snapshots"
