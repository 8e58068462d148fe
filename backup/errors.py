"""Errors that the user can act on. The CLI prints them on one line, without a traceback.

BackupError                 (exit 1 unless a subclass says otherwise)
 ├─ InputError              bad path, option or argument given by the user (exit 2)
 ├─ SourceError             the running n8n or its files could not be read
 │   ├─ ApiError            the public API is unreachable, refused the key, or answered oddly
 │   ├─ SqliteBackupError   the online copy of the SQLite database failed
 │   └─ PgDumpError         pg_dump, pg_restore or psql failed
 ├─ ExecutionsRunningError  executions still ran when the wait ran out (exit 3)
 ├─ SnapshotError           a folder is not a snapshot, or its manifest is unreadable
 ├─ KeyStoreError           the encryption key is missing, unreadable, or does not match (exit 12)
 ├─ RuntimeInstallError     an n8n runtime could not be installed or started
 ├─ RepositoryError         restic or its repository refused, failed or is not there
 ├─ N8nStartError           a fresh or restored n8n did not become ready
 ├─ N8nCheckError           n8n could not be asked, or its answer shows a restore problem
 └─ RestoreError            a full restore failed; says whether the previous database is back
     └─ RestoreInterrupted  SIGINT or SIGTERM during a restore, rolled back (exit 130)
"""

from __future__ import annotations

DETAIL_LIMIT = 200  # characters of another program's own text quoted in an error


def one_line(text: str, limit: int = DETAIL_LIMIT) -> str:
    """``text`` on one line of printable characters, at most ``limit`` long: how a server's or
    a library's message is quoted in ours."""
    printable = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(printable.split())[:limit]


class BackupError(Exception):
    """Root of every error that is the user's to fix; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(BackupError):
    """A path, option or argument given by the user is wrong."""

    exit_code = 2


class SourceError(BackupError):
    """The n8n instance being backed up, or its files, could not be read."""


class ApiError(SourceError):
    """n8n's public API could not be reached or refused the request."""


class SqliteBackupError(SourceError):
    """The online backup of the SQLite database failed or produced a damaged copy."""


class PgDumpError(SourceError):
    """pg_dump or pg_restore failed; the message carries their last words."""


class ExecutionsRunningError(BackupError):
    """Executions were still running when the wait ran out."""

    exit_code = 3


class SnapshotError(BackupError):
    """A folder is not a complete snapshot, or its manifest cannot be read."""


class KeyStoreError(BackupError):
    """The encryption key for a snapshot is missing, unreadable or not the right one."""

    exit_code = 12


class RepositoryError(BackupError):
    """restic is missing, or a restic repository is unreachable, locked, refused its password
    or failed a command; the message says which and what to do."""


class RepositoryLockedError(RepositoryError):
    """Another restic holds the repository's exclusive lock (a tag, a forget, a prune, or a
    stale lock): worth a wait before a retry."""


class RuntimeInstallError(BackupError):
    """An n8n runtime could not be installed from the npm registry, or does not run."""


class N8nStartError(BackupError):
    """n8n did not become ready; the message says why and ends with a hint."""


class N8nCheckError(BackupError):
    """n8n could not be asked, or its answer shows a restore problem."""


class RestoreError(BackupError):
    """The restore failed; the message says whether the previous database was put back."""


class RestoreInterrupted(RestoreError):
    """SIGINT or SIGTERM during a restore: rolled back, n8n running on its previous data."""

    exit_code = 130
