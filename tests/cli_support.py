"""Running the real n8n-backup command line from tests."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from backup.n8n.api import N8nApi
from backup.restore.fault_points import PAUSE_ENV
from verify.bootstrap import (
    sample_workflow,
)

ROOT = Path(__file__).resolve().parent.parent


def backup_command(*args: str) -> list[str]:
    """The real ``n8n-backup`` command line with ``args``."""
    return [sys.executable, "-m", "backup", *args]


def run_backup_cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``n8n-backup`` in a subprocess."""
    return subprocess.run(
        backup_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def start_paused_backup_cli(
    args: list[str], point: str, env: dict[str, str], seconds: int = 120
) -> subprocess.Popen[str]:
    """Start ``n8n-backup`` with ``args``, paused at fault point ``point`` (see
    backup.restore.fault_points); return once it has reached it."""
    process = subprocess.Popen(
        backup_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, PAUSE_ENV: f"{point}:{seconds}"},
    )
    assert process.stderr is not None
    said = []
    while line := process.stderr.readline():
        said.append(line)
        if line.strip() == f"paused at {point}":
            return process
    process.wait()
    raise AssertionError(f"n8n-backup ended before {point}: {''.join(said)}")


def snapshot_args(api_key: str, out: Path, keys: Path, *source: str) -> list[str]:
    """Arguments of ``n8n-backup snapshot`` for ``source`` (--n8n-folder/--api-url or
    --container), with the API key in a private file beside ``out``."""
    key_file = out.parent / f"api-key-{secrets.token_hex(3)}"
    key_file.write_text(api_key)
    key_file.chmod(0o600)
    return [
        "snapshot",
        *source,
        "--api-key-file",
        str(key_file),
        "--snapshots",
        str(out),
        "--key-store",
        str(keys),
    ]


def run_snapshot_cli(api_key: str, out: Path, keys: Path, *source: str) -> Path:
    """Take a snapshot with the CLI; return the folder it prints as its last line."""
    result = run_backup_cli(*snapshot_args(api_key, out, keys, *source))
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def snapshot_under_load(
    base_url: str, api_key: str, out: Path, keys: Path, *source: str
) -> tuple[Path, int]:
    """Take a snapshot with the CLI while another client keeps creating workflows.

    Returns the snapshot and how many workflows were created while it was being taken.
    """
    stop = threading.Event()
    written: list[str] = []
    writer_api = N8nApi(base_url, api_key)

    def keep_writing() -> None:
        while not stop.is_set():
            created = writer_api.create_workflow(
                sample_workflow(f"Written under load {len(written)}")
            )
            written.append(str(created["id"]))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 3:
            time.sleep(0.05)
        before = len(written)
        path = run_snapshot_cli(api_key, out, keys, *source)
        during = len(written) - before
    finally:
        stop.set()
        writer.join()
        writer_api.close()
    return path, during
