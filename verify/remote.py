"""``pytest verify --repo``: the selected snapshots come from a restic repository into a
private folder for the run (keys too, with --key-repo), verified exactly as local ones, each
result tagged in the repository, and the folder removed at the end of the run.

Only their manifests are fetched before the run; each snapshot's files come when its group of
tests starts and go when it ends (see SnapshotFiles), so that the run holds one snapshot per
worker on disk, not every selected one.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from backup.abandoned import FETCH_PREFIX, claim
from backup.atomic import make_private_dir
from backup.errors import BackupError, RepositoryError, RepositoryLockedError
from backup.keystore import KeyStore
from backup.manifest import MANIFEST_NAME
from backup.repository import keys as key_copies
from backup.repository import snapshots as stored
from backup.repository.restic import (
    Password,
    RepoSnapshot,
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

    def files(self) -> SnapshotFiles:
        """What fetches the snapshots' files group by group."""
        stored_by_folder = {folder: item.stored for folder, item in self.fetched.items()}
        return SnapshotFiles(self.repo, self.folder, stored_by_folder)


# Fetching a snapshot's files: attempts, and the wait after a locked repository (times 1, 2, 3).
FETCH_ATTEMPTS = 4
LOCK_WAIT_SECONDS = 5.0


@dataclass
class SnapshotFiles:
    """The files of snapshots whose manifests alone were fetched: each snapshot is completed
    from the repository for as long as groups of tests need it, then taken back to its
    manifest. Parallel workers share the run's folder, with two locks per snapshot: one to
    complete or strip it (one worker at a time), one held shared by every group using it (it
    is stripped only when no group uses it)."""

    repo: ResticRepository
    root: Path  # the run's private folder
    sources: dict[Path, RepoSnapshot]  # snapshot folder -> the restic snapshot it comes from

    def to_wire(self) -> dict[str, Any]:
        """For a pytest-xdist worker: where, and from which restic snapshots (no secret: the
        worker reads the repository's password as the controller did)."""
        return {
            "root": str(self.root),
            "sources": {
                str(folder): {**asdict(source), "time": source.time.isoformat()}
                for folder, source in self.sources.items()
            },
        }

    @classmethod
    def from_wire(cls, repo: ResticRepository, wire: dict[str, Any]) -> SnapshotFiles:
        """The controller's SnapshotFiles, in a worker."""
        sources = {
            Path(folder): RepoSnapshot(
                id=raw["id"],
                short_id=raw["short_id"],
                time=datetime.fromisoformat(raw["time"]),
                host=raw["host"],
                tags=tuple(raw["tags"]),
                paths=tuple(raw["paths"]),
            )
            for folder, raw in wire["sources"].items()
        }
        return cls(repo, Path(wire["root"]), sources)

    @contextlib.contextmanager
    def held(self, folder: Path, keep: Callable[[], bool]) -> Iterator[None]:
        """The whole snapshot in ``folder`` while the block runs; afterwards its manifest
        alone again, unless ``keep()`` says that the next group is of the same snapshot or
        another group still uses it. A folder that did not come from the repository is left
        as it is. Raises BackupError or OSError when the files cannot be fetched."""
        if folder not in self.sources:
            yield
            return
        locks = make_private_dir(self.root / "locks")
        complete = self.root / "complete" / folder.name
        with (
            open(locks / f"{folder.name}.state", "a") as state,
            open(locks / f"{folder.name}.use", "a") as use,
        ):
            with _locked(state):
                if not complete.exists():
                    self._complete(folder)
                    make_private_dir(complete.parent)
                    complete.touch(mode=0o600)
                fcntl.flock(use, fcntl.LOCK_SH)  # taken while no one can strip it
            try:
                yield
            finally:
                fcntl.flock(use, fcntl.LOCK_UN)
                if not keep():
                    with _locked(state):
                        _strip_unless_used(folder, complete, use)

    def _complete(self, folder: Path) -> None:
        """Replace the manifest-only ``folder`` by the whole snapshot, fetched beside it. A
        repository locked for a moment (another machine tags or prunes) is waited for; a
        snapshot that another shard tagged meanwhile (restic gives it a new id) is found again
        by its folder."""
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                self._fetch_into_place(folder, self.sources[folder])
                return
            except RepositoryLockedError:
                if attempt == FETCH_ATTEMPTS:
                    raise
                time.sleep(LOCK_WAIT_SECONDS * attempt)
            except RepositoryError:
                again = stored.find_by_folder(self.repo, folder.name)
                if attempt == FETCH_ATTEMPTS or again is None or again == self.sources[folder]:
                    raise
                self.sources[folder] = again

    def _fetch_into_place(self, folder: Path, source: RepoSnapshot) -> None:
        with tempfile.TemporaryDirectory(prefix=".complete-", dir=self.root) as staging:
            whole = stored.fetch(self.repo, source, Path(staging))
            if (whole / MANIFEST_NAME).read_bytes() != (folder / MANIFEST_NAME).read_bytes():
                raise RepositoryError(
                    f"restic snapshot {source.short_id} answered another manifest than before "
                    "the run: the repository changed under the run or is not trustworthy"
                )
            folder.rename(Path(staging) / "manifest-only")
            whole.rename(folder)


@contextlib.contextmanager
def _locked(handle: IO[str]) -> Iterator[None]:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _strip_unless_used(folder: Path, complete: Path, use: IO[str]) -> None:
    """Take ``folder`` back to its manifest unless a group still uses it. Housekeeping only:
    a failure leaves files that the end of the run removes, and fails no check."""
    try:
        fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another group uses it: the last one strips it
    try:
        complete.unlink(missing_ok=True)
        for entry in folder.iterdir():
            if entry.name == MANIFEST_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError:
        pass
    finally:
        fcntl.flock(use, fcntl.LOCK_UN)


def fetch_remote(
    repo: ResticRepository, wanted: list[str], key_repo: ResticRepository | None
) -> RemoteSnapshots:
    """Fetch the ``wanted`` snapshots (``latest`` by default) and, with ``key_repo``, the keys."""
    if key_repo is not None:
        require_own_secret(key_repo, repo.password)
    folder = make_private_dir(Path(tempfile.mkdtemp(prefix=FETCH_PREFIX)))
    claim(folder)  # a run killed outright leaves it (keys too) to the next one
    remote = RemoteSnapshots(repo, folder)
    try:
        if key_repo is not None:
            remote.key_store = folder / "keys"
            key_copies.pull(key_repo, KeyStore(remote.key_store))
        for item in stored.select(stored.stored_snapshots(repo), wanted):
            fetched = stored.fetch(repo, item.stored, folder / "snapshots", manifest_only=True)
            remote.fetched[fetched] = item
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
