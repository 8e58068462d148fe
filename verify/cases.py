"""A verification case: one snapshot restored onto one n8n version, and its run state."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backup.errors import InputError, KeyStoreError
from backup.keystore import KeyStore
from backup.manifest import Manifest
from backup.n8n.instances.base import N8nInstance
from backup.secret import Secret
from verify.remote import RemoteSnapshots, SnapshotFiles
from verify.report import SnapshotSummary

REDACTED = "[redacted]"
# When a snapshot does not say which PostgreSQL it came from (older manifests).
DEFAULT_POSTGRES_MAJOR = 18


class DowngradeError(InputError):
    """The target n8n version is older than the snapshot's source version."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class StoredKey:
    """What the key store holds for a snapshot: the key (hidden from every repr), or why not."""

    fingerprint: str
    value: Secret | None
    problem: str | None = None


@dataclass
class SnapshotCase:
    """One snapshot folder to verify, with the target n8n version (None: the source's)."""

    folder: Path
    key_store: Path
    requested_version: str | None
    boot_timeout: float
    quiet_seconds: float
    runtime: str = "process"
    image_template: str = ""
    postgres_dsn: str | None = field(default=None, repr=False)
    postgres_image: str = ""
    test_credentials: bool = False  # opt-in: n8n's credential test may reach their services
    instance: N8nInstance | None = field(default=None, repr=False)
    _last_log: str = field(default="", repr=False)
    _secrets: list[Secret] = field(default_factory=list, repr=False)

    @property
    def case_id(self) -> str:
        """Readable test id: the snapshot folder's name, with @VERSION when a target is given."""
        if self.requested_version:
            return f"{self.folder.name}@{self.requested_version}"
        return self.folder.name

    def target_version(self, manifest: Manifest) -> str:
        """The n8n version to boot: the one asked for, else the snapshot's own.

        Raises DowngradeError for a target older than the source: n8n migrates a database
        forward only.
        """
        target = self.requested_version or manifest.source_n8n_version
        if _version_key(target) < _version_key(manifest.source_n8n_version):
            raise DowngradeError(
                f"snapshot {manifest.snapshot_id} comes from n8n {manifest.source_n8n_version}; "
                f"n8n {target} is older and n8n cannot downgrade a database: verify on "
                f"{manifest.source_n8n_version} or newer"
            )
        return target

    def image(self, version: str) -> str:
        """The container image for ``version`` (docker runtime)."""
        return self.image_template.replace("{version}", version)

    def postgres_image_for(self, manifest: Manifest) -> str:
        """The PostgreSQL image for a snapshot: ``{major}`` becomes the major of the server the
        snapshot came from, so that the restore runs on what production runs."""
        source = manifest.database_server_version
        major = source.split(".")[0] if source else str(DEFAULT_POSTGRES_MAJOR)
        return self.postgres_image.replace("{major}", major)

    def stored_key(self, fingerprint: str) -> StoredKey:
        """Look the snapshot's key up in the key store."""
        try:
            value = KeyStore(self.key_store).load(fingerprint)
        except KeyStoreError as exc:
            return StoredKey(fingerprint, None, str(exc))
        secret = Secret(value)
        self._secrets.append(secret)
        return StoredKey(fingerprint, secret)

    def attach(self, instance: N8nInstance) -> None:
        """Remember the instance being booted for this case, for its log."""
        self.instance = instance
        self._last_log = ""

    def detach(self) -> None:
        """Keep the instance's last log (a container's goes with it), then stop it."""
        if self.instance is not None:
            self._last_log = self.instance.logs()
            self.instance.close()
            self.instance = None

    def instance_log(self) -> str:
        """The instance's log, or the last one's, with any key value blanked out."""
        instance = self.instance  # detach() may run meanwhile (the boot is in a thread)
        text = instance.logs() if instance is not None else self._last_log
        for secret in self._secrets:
            text = text.replace(secret.reveal(), REDACTED)
        return text


CASES_KEY = pytest.StashKey[list[SnapshotCase]]()
SUMMARIES_KEY = pytest.StashKey[dict[str, SnapshotSummary]]()
# Which runtime boots the restores, and why (said in the header and the report).
RUNTIME_NOTE_KEY = pytest.StashKey[str]()
REMOTE_KEY = pytest.StashKey[RemoteSnapshots]()  # --repo: the fetched snapshots
FILES_KEY = pytest.StashKey[SnapshotFiles]()  # --repo: fetches each group's snapshot files
NEXT_FOLDER_KEY = pytest.StashKey[Path | None]()  # the snapshot of the next test, if any
STARTED_KEY = pytest.StashKey[str]()  # when the run started, in UTC
# SIGTERM and SIGHUP taken as Ctrl-C for the run; closed (handlers put back) at its end.
INTERRUPTS_KEY = pytest.StashKey[contextlib.ExitStack]()
