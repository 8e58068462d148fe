"""Throwaway roles and databases on a PostgreSQL server, where verify restores a snapshot's
dump: a role without privileges owns the database and runs n8n on it. Both are dropped when
verify is done; a run killed outright (SIGKILL, the OOM killer) leaves them, and the next run
on that server drops them. The role's comment names the run that made it (an owner record),
and the database bears the role's name."""

from __future__ import annotations

import secrets
from dataclasses import replace

import psycopg
from psycopg import sql

from backup.abandoned import owner_gone, owner_record
from backup.errors import BackupError
from backup.n8n.postgres import PostgresTarget, drop_database

THROWAWAY_PREFIX = "nrv_verify_"


def create_throwaway_role(server: PostgresTarget) -> PostgresTarget:
    """A new login role with a random password and no privileges (not superuser, cannot create
    databases or roles), marked as this process's; ``server`` with that role's credentials.
    Its database, when made, takes the role's name."""
    role = f"{THROWAWAY_PREFIX}{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(24)
    with server.connect() as admin, admin.transaction():
        # One transaction: a concurrent sweep never sees the role without its owner.
        admin.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS"
            ).format(sql.Identifier(role), sql.Literal(password))
        )
        admin.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(role), sql.Literal(owner_record())
            )
        )
    return replace(server, user=role, password=password)


def drop_throwaway(server: PostgresTarget, role: str) -> None:
    """Drop the database of ``role`` (closing connections still open to it), then the role."""
    drop_database(server, role)
    with server.connect(autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def remove_abandoned_databases(server: PostgresTarget) -> list[str]:
    """Drop the throwaway databases and roles on ``server`` whose run was killed (only runs of
    this machine are judged: see :func:`backup.abandoned.owner_gone`); one line per role
    dropped, or why the server could not be looked at."""
    try:
        with server.connect(autocommit=True) as admin:
            rows = admin.execute(
                "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
                "WHERE rolname LIKE %s",
                (THROWAWAY_PREFIX.replace("_", "\\_") + "%",),
            ).fetchall()
    except (BackupError, psycopg.Error) as exc:
        return [
            f"cannot look for databases left by killed runs on {server.host}:{server.port}: {exc}"
        ]
    said = []
    for role, record in rows:
        if not isinstance(record, str) or not owner_gone(record):
            continue
        where = f"{role} on {server.host}:{server.port}"
        try:
            drop_throwaway(server, role)
        except (BackupError, psycopg.Error) as exc:
            said.append(f"cannot drop the database and role {where}: {exc}")
        else:
            said.append(f"dropped the database and role {where}, left by a run that was killed")
    return said
