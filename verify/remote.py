"""``pytest verify --repo``: the selected snapshots are fetched from a restic repository into
a private folder for the run (keys too, with --key-repo), verified exactly as local ones, each
result tagged in the repository, and the folder removed at the end of the run."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from backup.atomic import make_private_dir
from backup.errors import BackupError
from backup.keystore import KeyStore
from backup.repository import keys as key_copies
from backup.repository import snapshots as stored
from backup.repository.restic import (
    Password,
    ResticRepository,
    repository_from,
    require_own_secret,
)


@dataclass
class RemoteSnapshots:
    """Snapshots fetched for one run, and where they came from."""

    repo: ResticRepository
    folder: Path  # private, removed after the run
    fetched: dict[Path, stored.StoredSnapshot] = field(default_factory=dict)
    key_store: Path | None = None  # pulled from --key-repo into the private folder

    def record(self, results: dict[Path, dict[str, bool]]) -> list[str]:
        """Tag each fetched snapshot with its targets' results; the problems, said not raised:
        a repository that refuses a tag does not undo a verification."""
        problems = []
        for folder, by_target in results.items():
            item = self.fetched.get(folder)
            if item is None or not by_target:
                continue
            try:
                stored.record_verification(self.repo, item, by_target)
            except BackupError as exc:
                problems.append(f"cannot tag {item.snapshot_id} in {self.repo.shown}: {exc}")
        return problems

    def remove(self) -> None:
        """The private copies go: snapshots and keys."""
        shutil.rmtree(self.folder, ignore_errors=True)


def fetch_remote(
    repo: ResticRepository, wanted: list[str], key_repo: ResticRepository | None
) -> RemoteSnapshots:
    """Fetch the ``wanted`` snapshots (``latest`` by default) and, with ``key_repo``, the keys."""
    if key_repo is not None:
        require_own_secret(key_repo, repo.password)
    folder = make_private_dir(Path(tempfile.mkdtemp(prefix="n8n-verify-repo-")))
    remote = RemoteSnapshots(repo, folder)
    try:
        if key_repo is not None:
            remote.key_store = folder / "keys"
            key_copies.pull(key_repo, KeyStore(remote.key_store))
        for item in stored.select(stored.stored_snapshots(repo), wanted):
            remote.fetched[stored.fetch(repo, item, folder / "snapshots")] = item
    except BaseException:
        remote.remove()
        raise
    return remote


def repository_option(
    location: str | None,
    password_file: Path | None,
    password_command: str | None,
    options: list[str],
    *,
    what: str,
    environ_default: Password | None = None,
) -> ResticRepository | None:
    """A repository from verify's options, or None when ``location`` is not given."""
    if not location:
        return None
    return repository_from(
        location,
        password_file,
        password_command,
        options,
        what=what,
        environ_default=environ_default,
    )
