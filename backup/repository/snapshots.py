"""n8n snapshots in a restic repository: stored with tags that say what they are, confirmed
file by file before a local copy may go, fetched into a private folder to be verified or
restored, tagged with each verification's result, and pruned by restic's policy with the
newest verified snapshot of each instance always kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup.atomic import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, make_private_dir
from backup.errors import InputError, RepositoryError
from backup.listing import printable
from backup.manifest import MANIFEST_NAME, Manifest
from backup.repository.restic import RepoSnapshot, ResticRepository
from backup.retention import RetentionPolicy

MARK = "n8n-backup"  # every n8n snapshot carries it; other snapshots in the repository are not ours
SNAPSHOT_TAG, INSTANCE_TAG, VERSION_TAG = "snapshot", "instance", "n8n"
VERIFIED_TAG, FAILED_TAG = "verified", "failed"
CHECKED_TAG, STAMP = "checked", "%Y%m%dT%H%M%SZ"  # checked:<target version>@<UTC time>
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


@dataclass(frozen=True)
class StoredSnapshot:
    """An n8n snapshot as the repository holds it."""

    stored: RepoSnapshot

    @property
    def snapshot_id(self) -> str:
        """The manifest's snapshot id (from its tag)."""
        return self.stored.tag_value(SNAPSHOT_TAG) or "?"

    @property
    def instance(self) -> str:
        """The source instance's label."""
        return self.stored.tag_value(INSTANCE_TAG) or self.stored.host

    @property
    def n8n_version(self) -> str:
        """The source's n8n version."""
        return self.stored.tag_value(VERSION_TAG) or "?"

    @property
    def verified(self) -> list[str]:
        """Target versions it passed verification on."""
        return self.stored.tag_values(VERIFIED_TAG)

    @property
    def failed(self) -> list[str]:
        """Target versions it failed verification on."""
        return self.stored.tag_values(FAILED_TAG)

    def verifications(self) -> dict[str, tuple[bool, datetime]]:
        """Target version -> (passed, when), as verify tagged them (``checked:V@TIME``)."""
        found: dict[str, tuple[bool, datetime]] = {}
        for value in self.stored.tag_values(CHECKED_TAG):
            version, _, stamp = value.partition("@")
            try:
                when = datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)
            except ValueError:
                continue
            if version in self.verified or version in self.failed:
                found[version] = (version in self.verified, when)
        return found

    @property
    def verified_ok(self) -> bool:
        """Verified, and failed on no target."""
        return bool(self.verified) and not self.failed

    @property
    def folder_name(self) -> str:
        """The snapshot folder's name, as stored (checked: a plain name, nothing more)."""
        return stored_folder_name(self.stored)


def stored_folder_name(stored: RepoSnapshot) -> str:
    """The one folder a restic snapshot of ours holds, by its name (checked: a plain name)."""
    name = Path(stored.paths[0]).name if len(stored.paths) == 1 else ""
    if not _FOLDER_NAME.fullmatch(name):
        raise RepositoryError(
            f"restic snapshot {stored.short_id} does not hold one folder with a plain name "
            f"({printable(', '.join(stored.paths))[:200]}): not ours to fetch"
        )
    return name


def instance_of(manifest: Manifest) -> str:
    """The source instance's label (older snapshots have none)."""
    return manifest.instance or "unnamed"


def snapshot_tags(manifest: Manifest) -> list[str]:
    """The tags a stored snapshot carries."""
    return [
        MARK,
        f"{SNAPSHOT_TAG}:{manifest.snapshot_id}",
        f"{INSTANCE_TAG}:{instance_of(manifest)}",
        f"{VERSION_TAG}:{manifest.source_n8n_version}",
    ]


def store(repo: ResticRepository, folder: Path, say: Callable[[str], None]) -> StoredSnapshot:
    """Store a complete, checked snapshot folder; confirm that the repository holds every one of
    its files at its size before returning."""
    manifest = Manifest.load(folder)
    say(f"storing snapshot {manifest.snapshot_id} in the restic repository {repo.shown}")
    restic_id = repo.backup(folder, snapshot_tags(manifest), host=instance_of(manifest))
    return StoredSnapshot(_confirm(repo, restic_id, folder, manifest.snapshot_id))


def _confirm(
    repo: ResticRepository, restic_id: str, folder: Path, snapshot_id: str
) -> RepoSnapshot:
    """The stored snapshot, once the repository shows every local file in it with its size
    (sizes, not contents: restic checks its own contents), else an error (the local copy
    stays)."""
    stored, files = repo.listing(restic_id)
    tagged = stored.tag_value(SNAPSHOT_TAG)
    if MARK not in stored.tags or tagged != snapshot_id or not stored.id.startswith(restic_id):
        raise RepositoryError(
            f"restic snapshot {restic_id} in {repo.shown} is not the one just stored: the local "
            "copy is kept"
        )
    base = f"/{folder.name}"  # stored from its parent folder: the tree holds only its name
    remote = {
        path[len(base) + 1 :]: size for path, size in files.items() if path.startswith(base + "/")
    }
    local = {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    }
    missing = sorted(name for name, size in local.items() if remote.get(name) != size)
    if missing:
        raise RepositoryError(
            f"the restic repository {repo.shown} does not hold {printable(missing[0])} of "
            f"snapshot {stored.short_id} as it is here ({len(missing)} files differ): the local "
            "copy is kept"
        )
    return stored


def stored_snapshots(repo: ResticRepository) -> list[StoredSnapshot]:
    """The n8n snapshots in the repository, oldest first."""
    return [StoredSnapshot(item) for item in repo.snapshots(MARK)]


def select(stored: list[StoredSnapshot], wanted: Sequence[str]) -> list[StoredSnapshot]:
    """``latest`` (the newest of each instance; the default), ``all``, or snapshot ids
    (n8n-backup's, or restic's ids or their 8-character prefixes)."""
    wanted = list(wanted) or ["latest"]
    # The same n8n snapshot stored twice is one snapshot: its newest copy.
    by_id = {item.snapshot_id: item for item in stored}  # oldest first: the newest wins
    unique = sorted(by_id.values(), key=lambda item: item.stored.time)
    if wanted == ["all"]:
        return unique
    if wanted == ["latest"]:
        newest = {item.instance: item for item in unique}  # the last of an instance wins
        return sorted(newest.values(), key=lambda item: item.stored.time)
    if {"all", "latest"} & set(wanted):
        raise InputError("give all, latest, or snapshot ids, not a mix of them")
    chosen: list[StoredSnapshot] = []
    for name in wanted:
        matches = [
            item
            for item in unique
            if name in (item.snapshot_id, item.stored.short_id)
            or (len(name) >= 8 and item.stored.id.startswith(name))
        ]
        if not matches:
            raise InputError(
                f"no n8n snapshot {printable(name)} in the repository: `n8n-backup list --repo` "
                "lists them"
            )
        if len(matches) > 1:
            raise InputError(
                f"{printable(name)} names {len(matches)} snapshots in the repository: give more "
                "of the id"
            )
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def find_by_folder(repo: ResticRepository, name: str) -> RepoSnapshot | None:
    """The newest n8n snapshot in the repository that holds the folder ``name``."""
    found = None
    for item in stored_snapshots(repo):  # oldest first
        with contextlib.suppress(RepositoryError):  # not one plain folder: not this one
            if item.folder_name == name:
                found = item.stored
    return found


def fetch(
    repo: ResticRepository, stored: RepoSnapshot, into: Path, *, manifest_only: bool = False
) -> Path:
    """Restore one stored snapshot as ``into/<its folder name>`` (folders 0700, files 0600);
    with ``manifest_only``, the folder with its manifest alone."""
    name = stored_folder_name(stored)
    target = into / name
    if target.exists():
        raise InputError(f"{target} exists already: fetch into an empty folder")
    make_private_dir(into)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=into) as staging:
        os.chmod(staging, PRIVATE_DIR_MODE)
        only = MANIFEST_NAME if manifest_only else None
        restored = restore_folder(repo, stored, Path(staging), only=only)
        restored.rename(target)
    return target


def restore_folder(
    repo: ResticRepository, stored: RepoSnapshot, staging: Path, *, only: str | None = None
) -> Path:
    """Restore the folder a snapshot holds (or only the file ``only`` in it) into ``staging``
    (private), keeping only folders and regular files: 0700 and 0600, whatever the repository
    recorded."""
    name = stored_folder_name(stored)
    repo.restore(stored.id, staging, f"/{name}" + (f"/{only}" if only else ""))
    restored = staging / name
    if restored.is_symlink() or not restored.is_dir():
        raise RepositoryError(f"restic snapshot {stored.short_id} did not restore a folder")
    for path in [restored, *restored.rglob("*")]:  # rglob does not follow links
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            path.unlink()  # a snapshot holds no links; one from a repository is not followed
        elif stat.S_ISDIR(mode):
            os.chmod(path, PRIVATE_DIR_MODE)
        elif stat.S_ISREG(mode):
            os.chmod(path, PRIVATE_FILE_MODE)
        else:
            raise RepositoryError(
                f"restic snapshot {stored.short_id} holds {printable(path.name)}, which is "
                "neither a file nor a folder: not fetched"
            )
    return restored


def record_verification(
    repo: ResticRepository, item: StoredSnapshot, results: dict[str, bool]
) -> None:
    """Tag the stored snapshot with each target version's result (verified:V or failed:V),
    replacing that version's earlier result; anyone listing the repository sees it."""
    now = datetime.now(UTC).strftime(STAMP)
    add = [f"{VERIFIED_TAG if ok else FAILED_TAG}:{version}" for version, ok in results.items()]
    add += [f"{CHECKED_TAG}:{version}@{now}" for version in results]
    remove = [f"{FAILED_TAG if ok else VERIFIED_TAG}:{version}" for version, ok in results.items()]
    remove += [
        tag
        for tag in item.stored.tags
        if tag.startswith(f"{CHECKED_TAG}:")
        and tag[len(CHECKED_TAG) + 1 :].partition("@")[0] in results
    ]
    stale = [tag for tag in remove if tag in item.stored.tags]
    fresh = [tag for tag in add if tag not in item.stored.tags]
    if fresh or stale:
        repo.retag(item.stored.id, fresh, stale)


@dataclass(frozen=True)
class PrunePlan:
    """What a prune removes and keeps (restic's plan, with the safety rules on top)."""

    remove: list[StoredSnapshot]
    keep: list[tuple[StoredSnapshot, list[str]]]

    def report(self, *, dry_run: bool) -> list[str]:
        """One line per snapshot, as the local prune says it."""
        verb = "would remove" if dry_run else "removed"
        lines = [f"{verb} {_label(item)}" for item in self.remove]
        lines += [f"keep {_label(item)} ({', '.join(why)})" for item, why in self.keep]
        return lines


def _label(item: StoredSnapshot) -> str:
    return printable(f"{item.snapshot_id} ({item.instance}, restic {item.stored.short_id})")


def plan_prune(repo: ResticRepository, policy: RetentionPolicy) -> PrunePlan:
    """restic's ``forget`` plan for ``policy`` (per instance), then: the newest verified
    snapshot of each instance is kept whatever the plan says."""
    keep_args = [
        f"--keep-{unit}={count}"
        for unit, count in (
            ("daily", policy.keep_daily),
            ("weekly", policy.keep_weekly),
            ("monthly", policy.keep_monthly),
        )
        if count > 0
    ] or ["--keep-last=1"]  # no period: the newest only, as the local prune keeps
    # A plan changes nothing: no lock, so it works while a nightly store or verify runs.
    groups = repo.json(
        "forget", "--dry-run", "--no-lock", "--tag", MARK, "--group-by", "host", *keep_args
    )
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise RepositoryError(f"restic forget on {repo.shown} answered no plan")
    stored = {item.stored.id: item for item in stored_snapshots(repo)}  # oldest first
    reasons: dict[str, list[str]] = {}
    removed: list[str] = []
    for group in groups:
        kept = group.get("keep") or []
        whys = group.get("reasons") or []  # one per kept snapshot, in the same order
        for index, raw in enumerate(kept):
            why = whys[index] if index < len(whys) and isinstance(whys[index], dict) else {}
            matches = [str(match) for match in why.get("matches") or []]
            reasons.setdefault(str(raw.get("id")) if isinstance(raw, dict) else "", []).extend(
                matches
            )
        removed += [
            str(raw.get("id")) for raw in group.get("remove") or [] if isinstance(raw, dict)
        ]
    newest_ok: dict[str, StoredSnapshot] = {}
    for item in stored.values():
        if item.verified_ok:  # oldest first: the last verified one of an instance wins
            newest_ok[item.instance] = item
    for item in newest_ok.values():
        reasons.setdefault(item.stored.id, []).append("newest verified")
    keep = [(stored[i], why or ["restic policy"]) for i, why in reasons.items() if i in stored]
    remove = [stored[i] for i in removed if i in stored and i not in reasons]
    return PrunePlan(remove, sorted(keep, key=lambda pair: pair[0].stored.time))


def prune(repo: ResticRepository, policy: RetentionPolicy, *, dry_run: bool) -> PrunePlan:
    """Forget what the plan removes and prune the repository's data; with ``dry_run`` only
    the plan."""
    plan = plan_prune(repo, policy)
    if not dry_run and plan.remove:
        repo.forget([item.stored.id for item in plan.remove])
        repo.prune()
    return plan


def format_stored(items: list[StoredSnapshot], as_json: bool) -> str:
    """The stored snapshots as a table (newest last) or as JSON for scripts."""
    rows = [
        {
            "restic_id": item.stored.short_id,
            "snapshot_id": item.snapshot_id,
            "instance": item.instance,
            "created": item.stored.time.isoformat(timespec="seconds"),
            "n8n_version": item.n8n_version,
            "verified_on": item.verified,
            "failed_on": item.failed,
            "last_verification": (
                "FAILED" if item.failed else "PASSED" if item.verified else "never verified"
            ),
        }
        for item in items
    ]
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "no n8n snapshot in this repository"
    header = ("RESTIC", "SNAPSHOT", "INSTANCE", "CREATED (UTC)", "N8N", "VERIFICATION")
    lines = [
        (
            row["restic_id"],
            row["snapshot_id"],
            row["instance"],
            item.stored.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            row["n8n_version"],
            _verification(item),
        )
        for row, item in zip(rows, items, strict=True)
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(
            printable(str(cell)).ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in [header, *lines]
    )


def _verification(item: StoredSnapshot) -> str:
    said = [f"passed on {v}" for v in item.verified] + [f"FAILED on {v}" for v in item.failed]
    return ", ".join(said) or "never verified"
