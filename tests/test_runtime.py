"""n8n runtimes from the npm registry: idempotent, self-contained, and never half-installed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from backup.errors import N8nStartError, RuntimeInstallError
from backup.n8n import npm
from backup.n8n.instances.process import N8nProcess


def test_installed_runtime_runs_with_its_own_node(launcher: Path) -> None:
    """The launcher works with only the system's (older) Node.js on PATH."""
    result = subprocess.run(
        [str(launcher), "--version"],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == npm.DEFAULT_N8N_VERSION


def test_second_install_takes_seconds(launcher: Path) -> None:
    started = time.monotonic()
    assert npm.install(npm.DEFAULT_N8N_VERSION, log=False) == launcher
    assert time.monotonic() - started < 5


def test_failed_install_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version the registry does not have fails cleanly, with no folder a later run trusts."""
    monkeypatch.setenv(npm.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(RuntimeInstallError, match=r"npm install .*n8n@0\.0\.1 failed"):
        npm.install("0.0.1", log=False)
    assert npm.installed_launcher("0.0.1") is None
    assert list((tmp_path / "cache" / "runtimes").iterdir()) == []


def test_a_driver_is_a_context_manager_that_cleans_up_a_failed_start(
    launcher: Path, tmp_path: Path
) -> None:
    """``with N8nProcess(...)`` starts n8n; when the start fails (here: its port is taken),
    the process and its log folder are gone and the error says why."""
    instance = N8nProcess(launcher, tmp_path, None, boot_timeout=120)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", instance.port))
        taken.listen()
        with pytest.raises(N8nStartError, match="already in use"), instance:
            pytest.fail("n8n started on a port that was taken")
    assert not instance.is_running()
    assert not Path(instance._log_dir.name).exists()
    with N8nProcess(launcher, tmp_path, None, boot_timeout=120) as running:
        assert running.is_running() and running.ready_seconds is not None
    assert not running.is_running()
