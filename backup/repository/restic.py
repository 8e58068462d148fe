"""restic, the engine of snapshot repositories: it is run with the chosen password source
(never a password on a command line) and its failures become one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from backup.errors import InputError, RepositoryError, RepositoryLockedError
from backup.interrupts import interrupts_ignored
from backup.listing import created_time, printable

INSTALL_HINT = "install restic (Debian/Ubuntu package restic: apt install restic)"
PASSWORD_FILE_ENV = "RESTIC_PASSWORD_FILE"
PASSWORD_COMMAND_ENV = "RESTIC_PASSWORD_COMMAND"
# restic reads these from its environment; a run sets the one it means and drops the others.
_RESTIC_ENV = (
    "RESTIC_PASSWORD",
    PASSWORD_FILE_ENV,
    PASSWORD_COMMAND_ENV,
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
)
COMMAND_TIMEOUT = 3600.0
STOP_TIMEOUT = 10.0
_BACKEND = re.compile(r"[a-z][a-z0-9]*:")  # sftp:, rest:, s3:, local:...; else a path
_LOCKED = re.compile(r"repository is already locked.*? by (.+)")
_UNREACHABLE = re.compile(
    r"connection refused|dial tcp|no such host|network is unreachable|i/o timeout|"
    r"unable to start the sftp session|ssh: connect|connection reset|Connection closed",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Password:
    """Where restic finds a repository's password: a file or a command (restic's own
    conventions), never the password itself."""

    file: Path | None = None
    command: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Password | None:
        """RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND, as restic itself reads them."""
        if environ.get(PASSWORD_FILE_ENV):
            return cls(file=Path(environ[PASSWORD_FILE_ENV]))
        if environ.get(PASSWORD_COMMAND_ENV):
            return cls(command=environ[PASSWORD_COMMAND_ENV])
        return None

    def environ(self) -> dict[str, str]:
        """The variable that hands this password source to restic."""
        if self.file is not None:
            return {PASSWORD_FILE_ENV: str(self.file)}
        return {PASSWORD_COMMAND_ENV: str(self.command)}

    def same_secret_as(self, other: Password) -> bool:
        """Whether both name the same file, command or file contents (then they are one secret,
        not two)."""
        if self.command is not None or other.command is not None:
            return self.command == other.command
        assert self.file is not None and other.file is not None
        try:
            return self.file.read_bytes().strip() == other.file.read_bytes().strip()
        except OSError:
            return self.file == other.file


def password_source(file: Path | None, command: str | None) -> Password | None:
    """A password file or command given as options (at most one of them)."""
    if file is not None and command:
        raise InputError("give a password file or a password command, not both")
    if file is not None:
        return Password(file=file)
    return Password(command=command) if command else None


@dataclass(frozen=True)
class RepoSnapshot:
    """One snapshot in a restic repository, as ``restic snapshots --json`` describes it."""

    id: str
    short_id: str
    time: datetime
    host: str
    tags: tuple[str, ...]
    paths: tuple[str, ...]

    def tag_value(self, prefix: str) -> str | None:
        """The value of the first ``prefix:value`` tag, if any."""
        for tag in self.tags:
            if tag.startswith(f"{prefix}:"):
                return tag[len(prefix) + 1 :]
        return None

    def tag_values(self, prefix: str) -> list[str]:
        """Every value of ``prefix:value`` tags."""
        return [tag[len(prefix) + 1 :] for tag in self.tags if tag.startswith(f"{prefix}:")]


@dataclass(frozen=True)
class ResticRepository:
    """A restic repository: its location (restic's syntax: a path, sftp:..., rest:..., s3:...),
    its password source and extended options (``-o key=value``, e.g. sftp.command)."""

    location: str
    password: Password
    options: tuple[str, ...] = ()

    def run(self, *args: str, cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``restic ARGS`` on this repository; its standard output, or a RepositoryError
        that says in one line what went wrong and what to do."""
        restic = shutil.which("restic")
        if restic is None:
            raise RepositoryError(f"restic is not installed: {INSTALL_HINT}")
        # The location goes in the environment: a URL may hold credentials, and `ps` shows
        # every command line.
        command = [restic, *self._option_args(), *args]
        try:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**self._environ(), "RESTIC_REPOSITORY": self.location},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        except OSError as exc:
            raise RepositoryError(f"cannot run restic: {exc.strerror or exc}") from None
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise RepositoryError(
                f"restic {args[0]} on {self.shown} did not finish in {timeout:.0f} s"
            ) from None
        except BaseException:
            _stop(process)  # interrupted: restic removes its lock on SIGINT
            raise
        if process.returncode != 0:
            error = RepositoryLockedError if _LOCKED.search(stderr) else RepositoryError
            raise error(self._failure(args[0], stderr))
        return stdout

    @property
    def shown(self) -> str:
        """The location as it may be printed (no credentials embedded in a URL)."""
        return printable(_without_credentials(self.location))

    def json(self, *args: str) -> Any:
        """``restic ARGS --json``, parsed."""
        out = self.run(*args, "--json")
        try:
            return json.loads(out.strip().splitlines()[-1] if out.strip() else "null")
        except (json.JSONDecodeError, IndexError):
            raise RepositoryError(
                f"restic {args[0]} on {self.shown} answered something that is not JSON"
            ) from None

    def open(self) -> None:
        """Check that the repository is there and the password opens it (reads its config)."""
        self.run("cat", "config")

    def init(self) -> None:
        """Create the repository (restic refuses if one is there already)."""
        self.run("init")

    def check(self, read_data_subset: str | None = None) -> str:
        """``restic check``, reading back a sample of the data with ``read_data_subset``."""
        args = ["check"]
        if read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        return self.run(*args)

    def snapshots(self, tag: str | None = None) -> list[RepoSnapshot]:
        """The repository's snapshots (with ``tag`` only), oldest first."""
        args = ["snapshots"] + (["--tag", tag] if tag else [])
        listed = self.json(*args) or []
        if not isinstance(listed, list):
            raise RepositoryError(f"restic snapshots on {self.shown} answered no list")
        found = [snapshot for raw in listed if (snapshot := _snapshot(raw)) is not None]
        return sorted(found, key=lambda item: item.time)

    def backup(self, folder: Path, tags: Sequence[str], host: str) -> str:
        """Store ``folder``; the new snapshot's id. It is stored from its parent folder: the
        snapshot's tree holds ``/<folder name>`` (restored as ``TARGET/<folder name>``)."""
        out = self.run(
            "backup",
            "--json",
            "--host",
            host,
            *[arg for tag in tags for arg in ("--tag", tag)],
            folder.name,
            cwd=folder.parent,
        )
        for line in reversed(out.splitlines()):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("message_type") == "summary":
                return str(message["snapshot_id"])
        raise RepositoryError(f"restic backup on {self.shown} did not say which snapshot it made")

    def listing(self, snapshot_id: str) -> tuple[RepoSnapshot, dict[str, int]]:
        """A snapshot and every file in it (path in its tree -> size): ``restic ls --json``,
        whose first line describes the snapshot itself."""
        out = self.run("ls", "--json", snapshot_id)
        snapshot: RepoSnapshot | None = None
        files: dict[str, int] = {}
        for line in out.splitlines():
            try:
                node = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(node, dict):
                continue
            if node.get("struct_type") == "snapshot" and snapshot is None:
                snapshot = _snapshot(node)
            elif node.get("type") == "file" and isinstance(node.get("size", 0), int):
                files[str(node.get("path"))] = int(node.get("size") or 0)
        if snapshot is None:
            raise RepositoryError(f"restic ls on {self.shown} did not describe {snapshot_id}")
        return snapshot, files

    def restore(self, snapshot_id: str, target: Path, include: str) -> None:
        """Restore the ``include`` path of a snapshot's tree (``/<folder name>``) under
        ``target``, and nothing else the snapshot may hold."""
        self.run("restore", snapshot_id, "--target", str(target), "--include", include)

    def retag(self, snapshot_id: str, add: Sequence[str], remove: Sequence[str] = ()) -> None:
        """Add and remove tags of one snapshot (restic rewrites it under a new id)."""
        args = ["tag"]
        args += [arg for tag in add for arg in ("--add", tag)]
        args += [arg for tag in remove for arg in ("--remove", tag)]
        self.run(*args, snapshot_id)

    def forget(self, snapshot_ids: Sequence[str]) -> None:
        """Forget these snapshots (their data goes at the next prune)."""
        if snapshot_ids:
            self.run("forget", *snapshot_ids)

    def prune(self) -> None:
        """Remove the data no snapshot needs any more."""
        self.run("prune")

    def _option_args(self) -> list[str]:
        return [arg for option in self.options for arg in ("--option", option)]

    def _environ(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k not in _RESTIC_ENV}
        environ.update(self.password.environ())
        return environ

    def _failure(self, command: str, stderr: str) -> str:
        """restic's failure in one line, with what to do."""
        where = self.shown
        if "wrong password or no key found" in stderr:
            return (
                f"wrong password for the restic repository {where}: check the password file or "
                "command given for it"
            )
        locked = _LOCKED.search(stderr)
        if locked:
            since = re.search(r"lock was created at ([^(\n]+)", stderr)
            when = f" since {since.group(1).strip()}" if since else ""
            return (
                f"the restic repository {where} is locked by {locked.group(1).strip()}{when}: if "
                "no restic runs on it any more, remove the stale lock with `restic -r "
                "REPOSITORY unlock` (n8n-backup never unlocks on its own)"
            )
        if "Is there a repository at the following location?" in stderr:
            if _UNREACHABLE.search(stderr):
                return f"the restic repository {where} is unreachable: {_last_line(stderr)}"
            return (
                f"{where} is not a restic repository (no config there): check the location, or "
                "create one with `n8n-backup repo init`"
            )
        if command == "init" and "already" in stderr:
            return f"{where} is a restic repository already: nothing to initialise"
        if _UNREACHABLE.search(stderr):
            return f"the restic repository {where} is unreachable: {_last_line(stderr)}"
        return f"restic {command} failed on {where}: {_last_line(stderr)}"


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop restic the way it cleans up after itself (SIGINT: its lock goes), then for sure;
    a second interrupt meanwhile does not leave it running."""
    with interrupts_ignored():
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _without_credentials(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host``, wherever it appears (up to the
    last ``@`` before the host, as restic reads it)."""
    return re.sub(r"//[^/\s\"']*@", "//***@", text)


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    said = (fatal or lines or ["no message"])[-1].removeprefix("Fatal:").strip()
    return printable(_without_credentials(said)[:300])


def _snapshot(raw: object) -> RepoSnapshot | None:
    if not isinstance(raw, dict):
        return None
    created = created_time(raw.get("time"))
    if created is None or not isinstance(raw.get("id"), str):
        return None
    return RepoSnapshot(
        id=raw["id"],
        short_id=str(raw.get("short_id") or raw["id"][:8]),
        time=created,
        host=str(raw.get("hostname") or ""),
        tags=tuple(str(tag) for tag in raw.get("tags") or []),
        paths=tuple(str(path) for path in raw.get("paths") or []),
    )


def repository(
    location: str | None, password: Password | None, options: Sequence[str] = (), *, what: str
) -> ResticRepository:
    """A repository from the options given; ``what`` names it in errors ("--repo")."""
    if not location:
        raise InputError(f"give {what} REPOSITORY (a restic repository location)")
    shown = printable(_without_credentials(location))
    if password is None:
        raise InputError(
            f"no password for {what} {shown}: give {what}-password-file FILE or "
            f"{what}-password-command CMD (or set {PASSWORD_FILE_ENV})"
        )
    if password.file is not None and not password.file.is_file():
        raise InputError(f"password file {password.file} for {what} is not a readable file")
    # restic runs in other folders (a backup from the snapshot's parent): no relative paths.
    if password.file is not None:
        password = Password(file=password.file.absolute())
    if not _BACKEND.match(location):
        location = str(Path(location).absolute())
    for option in options:
        if "=" not in option:
            raise InputError(f"{what}-option {option!r} is not KEY=VALUE (e.g. sftp.command=...)")
    return ResticRepository(location, password, tuple(options))


def repository_from(
    location: str | None,
    password_file: Path | None,
    password_command: str | None,
    options: Sequence[str],
    *,
    what: str,
    environ_default: Password | None = None,
) -> ResticRepository:
    """A repository from a command's options: ``--X``, ``--X-password-file`` or
    ``--X-password-command`` (else ``environ_default``), ``--X-option``."""
    password = password_source(password_file, password_command) or environ_default
    return repository(location, password, options, what=what)


def require_own_secret(key_repo: ResticRepository, snapshots_password: Password | None) -> None:
    """The key repository needs a secret of its own: one password must not open both."""
    if snapshots_password is not None and key_repo.password.same_secret_as(snapshots_password):
        raise InputError(
            "the key repository's password is the snapshot repository's: give it a secret of "
            "its own, or one thief holds both"
        )
