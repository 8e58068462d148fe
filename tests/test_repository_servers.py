"""The repository servers work for a real restic: init, backup, snapshots, over REST and SFTP."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.repository_servers import RestServer, SftpServer, require_tool

RESTIC_TIMEOUT = 60


def _restic_env(tmp_path: Path) -> dict[str, str]:
    """An environment with a fresh password file (0600) and nothing of the caller's restic."""
    password_file = tmp_path / "restic-password"
    password_file.touch(mode=0o600)
    password_file.write_text("correct horse battery staple\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RESTIC_")}
    env["RESTIC_PASSWORD_FILE"] = str(password_file)
    env["RESTIC_CACHE_DIR"] = str(tmp_path / "restic-cache")
    return env


def _round_trip(url: str, options: list[str], tmp_path: Path) -> None:
    """init, back up a small folder, and find its snapshot in ``snapshots --json``."""
    restic = require_tool("restic")
    env = _restic_env(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.json").write_text('{"b": 2}\n')

    def run(*args: str) -> str:
        result = subprocess.run(
            [restic, "-r", url, *options, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=RESTIC_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"restic {args[0]} failed: {result.stderr[-2000:]}"
        return result.stdout

    run("init")
    run("backup", "--host", "nrv-test", "--tag", "repository-servers", str(folder))
    snapshots = json.loads(run("snapshots", "--json"))
    assert len(snapshots) == 1
    assert snapshots[0]["paths"] == [str(folder)]
    assert snapshots[0]["tags"] == ["repository-servers"]


def test_rest_server_serves_a_repository(rest_server: RestServer, tmp_path: Path) -> None:
    assert rest_server.url == f"rest:http://127.0.0.1:{rest_server.port}/"
    url = rest_server.repo_url("rest-self-test")
    assert url == f"{rest_server.url}rest-self-test/"
    _round_trip(url, rest_server.restic_options(), tmp_path)
    assert (rest_server.data_dir / "rest-self-test" / "config").is_file()


def test_sftp_server_serves_a_repository(sftp_server: SftpServer, tmp_path: Path) -> None:
    url = sftp_server.repo_url("sftp-self-test")
    assert url == f"sftp:nrv-sftp:{sftp_server.root}/sftp-self-test"
    _round_trip(url, sftp_server.restic_options(), tmp_path)
    config = sftp_server.root / "sftp-self-test" / "config"
    assert config.is_file()
    assert config.stat().st_uid != 0, "the repository was written by the SFTP user, not root"
