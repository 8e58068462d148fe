"""Optional parts of the install: PostgreSQL support and Docker support are extras, so that a
user of SQLite and the process runtime installs little. A module that needs an extra says so
in one line when it is missing."""

from __future__ import annotations

from backup.errors import InputError

DISTRIBUTION = "n8n-restore-verify"


class MissingExtraError(InputError):
    """A command needs an optional part of the install that is not there."""


def missing_extra(extra: str, exc: ImportError) -> MissingExtraError:
    """The one-line error for a missing ``extra`` (``exc`` names the missing module)."""
    return MissingExtraError(
        f"this needs the {extra!r} extra ({exc.name or 'a module'} is not installed): "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )
