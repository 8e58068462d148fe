"""A tiny SQLite database with the columns of n8n's tables that this project reads.

For unit tests of edge cases only; every feature is also tested against a real n8n database.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from backup.n8n.cipher import encrypt_credential_data

SCHEMA = """
CREATE TABLE workflow_entity (id TEXT PRIMARY KEY, name TEXT, active INTEGER, nodes TEXT,
    connections TEXT, "activeVersionId" TEXT);
CREATE TABLE credentials_entity (id TEXT PRIMARY KEY, name TEXT, type TEXT, data TEXT);
CREATE TABLE execution_entity (id INTEGER PRIMARY KEY, status TEXT, "waitTill" TEXT);
CREATE TABLE user_api_keys (id TEXT, "apiKey" TEXT, "createdAt" TEXT);
CREATE TABLE migrations (id INTEGER PRIMARY KEY, timestamp INTEGER, name TEXT);
"""


def make_database(path: Path, key: str, workflows: int = 2, credentials: int = 2) -> Path:
    """Create a database with ``workflows`` (the first active) and ``credentials``."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA)
        for index in range(workflows):
            conn.execute(
                "INSERT INTO workflow_entity VALUES (?, ?, ?, ?, ?, ?)",
                (
                    f"wf{index}",
                    f"Workflow {index}",
                    int(index == 0),
                    json.dumps([{"name": "Start", "type": "n8n-nodes-base.manualTrigger"}]),
                    "{}",
                    "v1" if index == 0 else None,
                ),
            )
        for index in range(credentials):
            data = encrypt_credential_data({"user": f"u{index}", "password": f"pw{index}"}, key)
            conn.execute(
                "INSERT INTO credentials_entity VALUES (?, ?, ?, ?)",
                (f"cr{index}", f"Credential {index}", "httpBasicAuth", data),
            )
        conn.execute("INSERT INTO execution_entity (status, \"waitTill\") VALUES ('success', NULL)")
        conn.execute("INSERT INTO execution_entity (status, \"waitTill\") VALUES ('waiting', 'x')")
        conn.execute("INSERT INTO migrations (timestamp, name) VALUES (1, 'Initial1')")
        conn.commit()
    return path
