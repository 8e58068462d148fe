"""Prometheus metrics of a snapshot root, for node_exporter's textfile collector.

Computed from what is on disk (the snapshots' manifests and their verification records), so
that every command that changes it (snapshot, prune, verify) can rewrite the file, atomically,
with the same values. Labels: ``instance`` (the source n8n, as its snapshots name it) and
``target_version`` (the n8n version a verification booted).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from backup.errors import SnapshotError
from backup.listing import load_dated
from backup.manifest import find_snapshots
from backup.repository.snapshots import StoredSnapshot
from backup.verification_record import read_record

UNKNOWN_INSTANCE = "unknown"


def _gauge(registry: CollectorRegistry, name: str, text: str, *labels: str) -> Gauge:
    return Gauge(name, text, ["instance", *labels], registry=registry)


class _Common:
    """The gauges a snapshot root and a repository both have, and the rule that the newest
    verification of an instance on a target version is the one reported."""

    def __init__(self, registry: CollectorRegistry, where: str) -> None:
        self.count = _gauge(registry, "n8n_backup_snapshots", f"Snapshots {where}")
        self.snapshot_time = _gauge(
            registry,
            "n8n_backup_last_snapshot_timestamp_seconds",
            "When the newest snapshot was taken",
        )
        self.verified_time = _gauge(
            registry,
            "n8n_backup_last_verification_timestamp_seconds",
            "When a snapshot was last verified on this target version",
            "target_version",
        )
        self.verified_ok = _gauge(
            registry,
            "n8n_backup_last_verification_success",
            "1 when every check passed in that verification, else 0",
            "target_version",
        )
        self._last_verified: dict[tuple[str, str], datetime] = {}

    def verification(self, instance: str, version: str, when: datetime, passed: bool) -> bool:
        """Report this verification unless a newer one is; whether it was reported."""
        key = (instance, version)
        if key in self._last_verified and self._last_verified[key] >= when:
            return False
        self._last_verified[key] = when
        self.verified_time.labels(*key).set(when.timestamp())
        self.verified_ok.labels(*key).set(1 if passed else 0)
        return True


def collect(root: Path) -> CollectorRegistry:
    """The metrics of every valid snapshot under ``root`` (invalid ones are left out)."""
    registry = CollectorRegistry()
    common = _Common(registry, "on disk")
    snapshot_size = _gauge(
        registry, "n8n_backup_last_snapshot_size_bytes", "Size of the newest snapshot's files"
    )
    workflows = _gauge(registry, "n8n_backup_last_snapshot_workflows", "Its workflows")
    credentials = _gauge(registry, "n8n_backup_last_snapshot_credentials", "Its credentials")
    verified_seconds = _gauge(
        registry,
        "n8n_backup_last_verification_duration_seconds",
        "How long that verification took (boot and checks)",
        "target_version",
    )
    newest: dict[str, datetime] = {}
    folders = find_snapshots(root) if root.is_dir() else []
    for folder in folders:
        try:
            manifest, created = load_dated(folder)
        except SnapshotError:
            continue
        instance = manifest.instance or UNKNOWN_INSTANCE
        common.count.labels(instance).inc()
        if instance not in newest or created > newest[instance]:
            newest[instance] = created
            common.snapshot_time.labels(instance).set(created.timestamp())
            snapshot_size.labels(instance).set(sum(entry.size for entry in manifest.files))
            workflows.labels(instance).set(manifest.counts.workflows)
            credentials.labels(instance).set(manifest.counts.credentials)
        record = read_record(folder)
        if record is None:
            continue
        try:
            verified_at = datetime.fromisoformat(record.verified_at)
        except ValueError:
            continue
        for target in record.targets:
            passed = target.result == "PASSED"
            if common.verification(instance, target.target_version, verified_at, passed):
                seconds = sum(value or 0 for value in target.durations.values())
                verified_seconds.labels(instance, target.target_version).set(seconds)
    return registry


def collect_repository(items: list[StoredSnapshot]) -> CollectorRegistry:
    """The same metrics for snapshots in a restic repository, from restic's own listing: the
    count, the newest snapshot's time, and per target version the newest verification's result
    and time (from the tags verify leaves there). Sizes and counts are not in a listing."""
    registry = CollectorRegistry()
    common = _Common(registry, "in the repository")
    for item in items:  # oldest first
        common.count.labels(item.instance).inc()
        common.snapshot_time.labels(item.instance).set(item.stored.time.timestamp())
        for version, (passed, when) in item.verifications().items():
            common.verification(item.instance, version, when, passed)
    return registry


def write_metrics(root: Path, path: Path) -> None:
    """Write the root's metrics to ``path`` in Prometheus' text format (atomically)."""
    write_to_textfile(str(path), collect(root))


def write_repository_metrics(items: list[StoredSnapshot], path: Path) -> None:
    """Write a repository's metrics to ``path`` (atomically)."""
    write_to_textfile(str(path), collect_repository(items))
