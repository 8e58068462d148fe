"""The result of the last verification of a snapshot, kept beside it as ``<id>.verified.json``.

Written by ``pytest verify`` (atomically), read by ``n8n-backup list`` and ``prune``. Beside the
snapshot, not inside it: a snapshot's folder holds exactly what its manifest lists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backup.atomic import write_text_atomic

SUFFIX = ".verified.json"


@dataclass(frozen=True)
class TargetResult:
    """One target version's outcome."""

    target_version: str
    runtime: str
    result: str  # PASSED, FAILED, or PARTIAL (some checks were not run: not verified)
    failed_tests: list[str]
    # After an upgrade: what the target's migrations changed, per workflow ("id (name)").
    upgrade_changes: dict[str, list[str]] = field(default_factory=dict)
    source_version: str = ""
    # "check: first line of why it failed", in the order the checks ran.
    causes: list[str] = field(default_factory=list)
    # What was expected and found: workflows, credentials, executions, node types, ...
    counts: dict[str, int | None] = field(default_factory=dict)
    durations: dict[str, float | None] = field(default_factory=dict)  # boot, checks (seconds)


@dataclass(frozen=True)
class VerificationRecord:
    """The last verification run of one snapshot (all its target versions)."""

    snapshot_id: str
    verified_at: str
    report: str
    targets: list[TargetResult]

    @property
    def passed(self) -> bool:
        """Every check passed on every target: only this counts as verified."""
        return bool(self.targets) and all(t.result == "PASSED" for t in self.targets)

    @property
    def outcome(self) -> str:
        """PASSED, FAILED (any target failed), or PARTIAL (not every check was run)."""
        if self.passed:
            return "PASSED"
        return "FAILED" if any(t.result == "FAILED" for t in self.targets) else "PARTIAL"


def record_path(snapshot_dir: Path) -> Path:
    """Where a snapshot's record lives: beside its folder."""
    return snapshot_dir.parent / f"{snapshot_dir.name}{SUFFIX}"


def write_record(snapshot_dir: Path, record: VerificationRecord) -> None:
    """Replace the snapshot's record atomically."""
    write_text_atomic(record_path(snapshot_dir), json.dumps(asdict(record), indent=2) + "\n")


def read_record(snapshot_dir: Path) -> VerificationRecord | None:
    """The snapshot's last record, or None if it was never verified (or the file is unreadable)."""
    try:
        raw: dict[str, Any] = json.loads(record_path(snapshot_dir).read_text(encoding="utf-8"))
        return VerificationRecord(
            snapshot_id=raw["snapshot_id"],
            verified_at=raw["verified_at"],
            report=raw["report"],
            targets=[TargetResult(**item) for item in raw["targets"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
