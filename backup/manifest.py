"""The manifest: what a snapshot holds, and the digests that prove what came back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backup.errors import SnapshotError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "n8n-restore-verify/snapshot"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One file of the snapshot, relative to the snapshot folder."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class WorkflowEntry:
    """One workflow as it is in the database copy."""

    id: str
    name: str
    active: bool
    digest: str
    export_file: str | None = None


@dataclass(frozen=True)
class CredentialEntry:
    """One credential; ``digest`` is keyed with the encryption key (see backup.digests)."""

    id: str
    name: str
    type: str
    digest: str


@dataclass(frozen=True)
class Counts:
    """Row counts read from the database copy."""

    workflows: int
    credentials: int
    executions: int


@dataclass(frozen=True)
class Manifest:
    """Everything verify needs to know about a snapshot, except the encryption key itself."""

    snapshot_id: str
    created: str
    source_n8n_version: str
    database_kind: str
    database_file: str
    key_fingerprint: str
    counts: Counts
    workflows: list[WorkflowEntry]
    credentials: list[CredentialEntry]
    files: list[FileEntry] = field(default_factory=list)
    table_prefix: str = ""
    database_schema: str | None = None  # PostgreSQL only
    # --force took the snapshot while this many executions were running.
    forced_with_running_executions: int = 0
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Serialise as indented JSON (stable key order, for diffs and auditors)."""
        body = asdict(self)
        header = {"format": body.pop("format"), "format_version": body.pop("format_version")}
        return json.dumps({**header, **body}, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        """Build a Manifest from parsed JSON; raise SnapshotError if it is not one."""
        if raw.get("format") != FORMAT_NAME:
            raise SnapshotError("manifest.json is not an n8n-restore-verify manifest")
        if raw.get("format_version") != FORMAT_VERSION:
            raise SnapshotError(
                f"manifest format version {raw.get('format_version')!r} is not supported "
                f"(this tool reads version {FORMAT_VERSION}): use a matching n8n-restore-verify"
            )
        try:
            return cls(
                snapshot_id=raw["snapshot_id"],
                created=raw["created"],
                source_n8n_version=raw["source_n8n_version"],
                database_kind=raw["database_kind"],
                database_file=raw["database_file"],
                key_fingerprint=raw["key_fingerprint"],
                counts=Counts(**raw["counts"]),
                workflows=[WorkflowEntry(**item) for item in raw["workflows"]],
                credentials=[CredentialEntry(**item) for item in raw["credentials"]],
                files=[FileEntry(**item) for item in raw["files"]],
                table_prefix=raw.get("table_prefix", ""),
                database_schema=raw.get("database_schema"),
                forced_with_running_executions=raw.get("forced_with_running_executions", 0),
            )
        except (KeyError, TypeError) as exc:
            raise SnapshotError(f"manifest.json is incomplete or malformed: {exc}") from None

    @classmethod
    def load(cls, snapshot_dir: Path) -> Manifest:
        """Read ``snapshot_dir/manifest.json``."""
        path = snapshot_dir / MANIFEST_NAME
        if not path.is_file():
            raise SnapshotError(f"{snapshot_dir} is not a snapshot: it has no {MANIFEST_NAME}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise SnapshotError(f"{path} does not hold a JSON object")
        return cls.from_dict(raw)


def find_snapshots(root: Path) -> list[Path]:
    """Snapshot folders directly under ``root`` (or ``root`` itself), oldest name first.

    Folders whose names start with a dot are in-progress or abandoned writes and are ignored.
    """
    if (root / MANIFEST_NAME).is_file():
        return [root]
    return sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / MANIFEST_NAME).is_file()
    )
