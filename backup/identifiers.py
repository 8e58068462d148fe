"""Names that end up in SQL or on n8n's command line: a table prefix and a PostgreSQL schema.

Both come from users and from manifests, which may be hostile. They are validated here against
what n8n itself can use, and are still quoted wherever they are used.
"""

from __future__ import annotations

import re

# n8n prefixes every table name with DB_TABLE_PREFIX; letters, digits and underscores only.
_TABLE_PREFIX = re.compile(r"[A-Za-z0-9_]{0,32}")
# An unquoted PostgreSQL identifier (n8n passes DB_POSTGRESDB_SCHEMA through unquoted).
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def table_prefix_problem(value: object) -> str | None:
    """Why ``value`` cannot be a table prefix, or None when it can."""
    if not isinstance(value, str) or not _TABLE_PREFIX.fullmatch(value):
        return (
            f"table prefix {value!r} is not letters, digits and underscores (at most 32), "
            "as n8n's DB_TABLE_PREFIX is"
        )
    return None


def schema_problem(value: object) -> str | None:
    """Why ``value`` cannot be a PostgreSQL schema name for n8n, or None when it can."""
    if not isinstance(value, str) or not _SCHEMA.fullmatch(value):
        return (
            f"PostgreSQL schema {value!r} is not a plain identifier (a letter or underscore, "
            "then letters, digits, underscores; at most 63)"
        )
    return None


def quote_identifier(name: str) -> str:
    """Quote an SQL identifier (SQLite and PostgreSQL agree on double quotes)."""
    return '"' + name.replace('"', '""') + '"'
