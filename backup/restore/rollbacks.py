"""What restores kept of the data they replaced: rollback copies in n8n's folder, rollback
databases beside n8n's PostgreSQL database, and a restore left pending by a killed run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from backup.n8n.container import ContainerSource
from backup.restore.database_slot import ROLLBACK_DIR, rollback_copies
from backup.restore.journal import read_journal

if TYPE_CHECKING:
    from backup.n8n.postgres import PostgresTarget

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Rollback:
    """One kept previous database."""

    kept_at: str  # ISO time of the restore that replaced it
    location: str  # a file path, or "database NAME on HOST:PORT"
    size_bytes: int | None  # None: not measured (PostgreSQL)


def _when(stamp: str) -> str:
    return datetime.strptime(stamp.split("-")[0].upper(), STAMP_FORMAT).isoformat()


def list_rollbacks(source: ContainerSource, postgres: PostgresTarget | None) -> list[Rollback]:
    """The rollback copies of ``source``'s data folder, or its PostgreSQL rollback databases,
    newest first."""
    if postgres is not None:
        from backup.restore.postgres_slot import rollback_databases

        return [
            Rollback(
                _when(name.rsplit("_", 1)[1]),
                f"database {name} on {postgres.host}:{postgres.port}",
                None,
            )
            for name in rollback_databases(postgres)
        ]
    return [
        Rollback(_when(copy.parent.name), str(copy), copy.stat().st_size)
        for copy in rollback_copies(source.folder.path / ROLLBACK_DIR)
    ]


def pending_restore(source: ContainerSource) -> str | None:
    """One line about a restore that a killed run left, or None."""
    journal = read_journal(source.folder.path / ROLLBACK_DIR)
    if journal is None:
        return None
    return (
        f"an interrupted restore of snapshot {journal.snapshot_id} is pending (step "
        f"{journal.step}): run n8n-backup restore --resume --container {source.name}"
        f"{' --postgres DSN' if journal.kind == 'postgres' else ''}"
    )


def format_rollbacks(
    source: ContainerSource, rollbacks: list[Rollback], pending: str | None, as_json: bool
) -> str:
    """A table for people or JSON for scripts."""
    if as_json:
        rows = [asdict(r) for r in rollbacks]
        return json.dumps({"container": source.name, "rollbacks": rows, "pending": pending})
    lines = [f"rollback copies of {source.name} (newest first, the newest 3 are kept):"]
    lines += [
        f"  {r.kept_at}  {'' if r.size_bytes is None else f'{r.size_bytes / 1e6:8.1f} MB  '}"
        f"{r.location}"
        for r in rollbacks
    ] or ["  none"]
    if pending:
        lines.append(pending)
    return "\n".join(lines)
