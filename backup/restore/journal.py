"""Where an interrupted full restore stands, kept beside its rollback copies.

A restore writes its step here before each change to n8n's data; ``restore --resume`` reads it
after the process was killed (SIGKILL, power loss) and undoes what was done. The file is gone
once a restore has finished or been rolled back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from backup.atomic import write_text_atomic
from backup.errors import SnapshotError

JOURNAL_NAME = "in-progress.json"
# The steps, in order: the rollback copy exists (nothing changed yet); the container is being
# stopped (n8n may be down, its data untouched); the live database is being replaced; it has
# been replaced (n8n runs the snapshot, unchecked).
PREPARED, STOPPING, REPLACING, REPLACED = "prepared", "stopping", "replacing", "replaced"
TOUCHED = (REPLACING, REPLACED)  # only these need the previous database put back


@dataclass(frozen=True)
class RestoreJournal:
    """One restore in progress."""

    container: str
    snapshot_id: str
    rollback: str  # the copy of the previous database (SQLite path, PostgreSQL database name)
    step: str
    kind: str = "sqlite"  # or "postgres"
    database: str = ""  # PostgreSQL: the live database's name
    staging: str = ""  # PostgreSQL: the database the snapshot was restored into beside it
    started_at: str = ""  # Docker's StartedAt of the container once the restore started it
    folders: str = ""  # the stamp of the node and binary folders swapped beside the database
    binary_root: str = ""  # where the binary data was swapped (see DataFolders)


def journal_path(rollback_dir: Path) -> Path:
    """The journal of the restores of one n8n data folder."""
    return rollback_dir / JOURNAL_NAME


def write_journal(rollback_dir: Path, journal: RestoreJournal) -> None:
    """Record the step about to be taken (atomically, before the change it names) in
    ``rollback_dir``, which the caller has made its own (see DatabaseSlot.claim_rollback_dir)."""
    write_text_atomic(journal_path(rollback_dir), json.dumps(asdict(journal), indent=2) + "\n")


def read_journal(rollback_dir: Path) -> RestoreJournal | None:
    """The pending restore of this data folder, or None."""
    path = journal_path(rollback_dir)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError("not an object of strings")
        journal = RestoreJournal(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise SnapshotError(f"the restore journal {path} is unreadable ({exc})") from None
    if journal.kind not in ("sqlite", "postgres"):
        raise SnapshotError(f"the restore journal {path} names an unknown kind {journal.kind!r}")
    if journal.step not in (PREPARED, STOPPING, *TOUCHED):
        raise SnapshotError(f"the restore journal {path} names an unknown step {journal.step!r}")
    return journal


def clear_journal(rollback_dir: Path) -> None:
    """The restore has finished or has been undone."""
    journal_path(rollback_dir).unlink(missing_ok=True)
