"""n8n runtimes from the npm registry: idempotent, self-contained, and never half-installed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from backup.errors import N8nStartError, RuntimeInstallError
from backup.n8n import npm
from backup.n8n.instances import ports, process
from backup.n8n.instances.ports import free_ports
from backup.n8n.instances.process import N8nProcess
from tests.n8n_support import Canary


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
    launcher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``with N8nProcess(...)`` starts n8n; when the start fails (here: every port it is given
    is taken, so its attempts on new ports run out), the process and its log folder are gone
    and the error says why."""
    with socket.socket() as taken, socket.socket() as broker:
        for sock in (taken, broker):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        taken_ports = [taken.getsockname()[1], broker.getsockname()[1]]
        chosen: list[int] = []

        def taken_again(count: int) -> list[int]:
            chosen.append(count)
            return taken_ports[:count]

        monkeypatch.setattr(process, "free_ports", taken_again)
        monkeypatch.setattr(process, "PORT_ATTEMPTS", 2)  # one new start is enough to show
        instance = N8nProcess(launcher, tmp_path, None, boot_timeout=120)
        with pytest.raises(N8nStartError, match="already in use"), instance:
            pytest.fail("n8n started on a port that was taken")
    assert chosen == [2, 2], "n8n did not start again on new ports"
    assert not instance.is_running()
    assert not Path(instance._log_dir.name).exists()
    monkeypatch.undo()
    with N8nProcess(launcher, tmp_path, None, boot_timeout=120) as running:
        assert running.is_running() and running.ready_seconds is not None
    assert not running.is_running()


def test_a_closed_instance_does_not_start(launcher: Path, tmp_path: Path) -> None:
    """verify boots in a thread: once the instance is closed (the run's end, Ctrl-C), a boot
    that gets to its start afterwards must not start an n8n nobody stops."""
    instance = N8nProcess(launcher, tmp_path, None, boot_timeout=120)
    instance.close()
    with pytest.raises(N8nStartError, match="stopped before it started"):
        instance.start(timeout=60)
    assert not instance.is_running()


def test_free_ports_are_held_until_all_are_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket is let go before the last one is bound: the kernel cannot hand out a port
    twice (it did, once, to n8n's server and task broker)."""
    events: list[str] = []

    class Recorded(socket.socket):
        def bind(self, address: Any) -> None:
            super().bind(address)
            events.append("bind")

        def close(self) -> None:
            events.append("close")
            super().close()

    monkeypatch.setattr(ports.socket, "socket", Recorded)
    chosen = free_ports(3)
    assert len(set(chosen)) == 3
    assert events[:3] == ["bind"] * 3 and set(events[3:]) == {"close"}, events


def test_a_program_on_n8ns_port_is_not_taken_for_n8n(launcher: Path, tmp_path: Path) -> None:
    """Another program took n8n's port after it was chosen and answers like a ready n8n: the
    wait does not believe it, and n8n starts again on ports of its own."""
    instance = N8nProcess(launcher, tmp_path, None, boot_timeout=120)
    first_port = instance.port
    impostor = Canary(port=first_port)
    try:
        with instance as running:
            assert running.port != first_port
            settings = httpx.get(f"{running.base_url}/rest/settings", timeout=10).json()
            assert isinstance(settings.get("data"), dict), settings  # n8n's, not {"ok": true}
        assert impostor.hits > 0, "the wait never asked the impostor: the test proves nothing"
    finally:
        impostor.close()
