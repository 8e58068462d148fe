"""n8n as a local process from an npm-installed runtime (see backup.n8n.npm)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from backup.abandoned import LOG_PREFIX, owned_temp_dir
from backup.errors import N8nStartError
from backup.n8n.instances.base import (
    DEFAULT_BOOT_TIMEOUT,
    QUIET_ENV,
    BootsOnEnter,
    LaunchGuard,
)
from backup.n8n.instances.ports import PORT_ATTEMPTS, free_ports
from backup.n8n.instances.readiness import Booting, listen_message, wait_until_ready

STOP_GRACE_SECONDS = 20
# What n8n prints before it exits when its server's or task broker's port is taken.
PORT_TAKEN = "is already in use. Do you have another instance of n8n running already?"
# A local process listens on loopback only.
LOOPBACK_ENV = {"N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_HOST": "127.0.0.1"}
# Variables from the caller's environment that would point the instance at the user's own n8n.
_INHERITED_PREFIXES_DROPPED = ("N8N_", "DB_", "QUEUE_", "EXECUTIONS_", "WEBHOOK_URL")


def instance_env(
    user_folder: Path, encryption_key: str | None, port: int, broker_port: int
) -> dict[str, str]:
    """The environment an instance runs with: its own folder, key and ports, nothing inherited.

    Without ``encryption_key`` n8n makes a key of its own and keeps it in its config file, as a
    fresh production instance does.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES_DROPPED)
    }
    env.update(QUIET_ENV)
    env.update(LOOPBACK_ENV)
    env.update(
        {
            "N8N_USER_FOLDER": str(user_folder),
            "N8N_PORT": str(port),
            "N8N_RUNNERS_BROKER_PORT": str(broker_port),
        }
    )
    if encryption_key is not None:
        env["N8N_ENCRYPTION_KEY"] = encryption_key
    return env


def dies_with_us(command: list[str], signal_name: str = "TERM") -> list[str]:
    """``command``, run so that the kernel sends it SIG``signal_name`` when the thread that
    started it ends, even by SIGKILL or the OOM killer: an n8n on restored production data
    (its key in its environment) must not outlive the run that booted it. Through util-linux's
    setpriv, which execs the command in its place; where setpriv is missing, ``command`` as it
    is."""
    setpriv = _setpriv_with_pdeathsig()
    return command if setpriv is None else [setpriv, "--pdeathsig", signal_name, "--", *command]


@functools.cache
def _setpriv_with_pdeathsig() -> str | None:
    """setpriv, when it is installed and knows --pdeathsig (util-linux 2.33 and later)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    try:
        probe = subprocess.run(
            [setpriv, "--pdeathsig", "TERM", "--", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return setpriv if probe.returncode == 0 else None


class OnHostPorts(Booting, Protocol):
    """An n8n whose server and task broker listen on ports of this machine (a process, or a
    container on the host's network), chosen by us before it starts."""

    @property
    def host_port(self) -> int:
        """The port n8n's server listens on."""
        ...

    def launch(self) -> None:
        """Start n8n, without waiting for it."""
        ...

    def move_to(self, port: int, broker_port: int) -> None:
        """Discard the launched n8n; the next launch listens on these ports."""
        ...


def ready_on_host_ports(instance: OnHostPorts, timeout: float) -> float:
    """Launch ``instance`` and wait until it is ready (seconds of the last launch).

    A port another program took between our choice and n8n's start is not the data's fault:
    n8n starts again on new ports (up to PORT_ATTEMPTS times in all, within ``timeout``), on
    the folder as the failed start left it (n8n opens its ports after its migrations, as a
    restarted production instance would). Until n8n's own log says it listens, an answer on
    the port is not taken for n8n's.
    """
    deadline = time.monotonic() + timeout
    attempt = 1
    while True:
        instance.launch()
        try:
            return wait_until_ready(
                instance,
                max(deadline - time.monotonic(), 0.0),
                listening_line=listen_message(
                    LOOPBACK_ENV["N8N_LISTEN_ADDRESS"], instance.host_port
                ),
            )
        except N8nStartError:
            if attempt == PORT_ATTEMPTS or PORT_TAKEN not in instance.logs():
                raise
            instance.move_to(*free_ports(2))
            attempt += 1


class N8nProcess(BootsOnEnter):
    """One n8n started from ``launcher`` on ``user_folder`` (the parent of ``.n8n``).

    Use as a context manager: the process is always stopped on exit, also when start fails.
    """

    def __init__(
        self,
        launcher: Path,
        user_folder: Path,
        encryption_key: str | None,
        *,
        extra_env: dict[str, str] | None = None,
        boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
    ) -> None:
        self.boot_timeout = boot_timeout
        self.launcher = launcher
        self.user_folder = user_folder
        self.port, broker_port = free_ports(2)
        self.env = instance_env(user_folder, encryption_key, self.port, broker_port)
        self.env.update(extra_env or {})
        self._log_dir = owned_temp_dir(LOG_PREFIX)
        self.log_path = Path(self._log_dir.name) / "n8n.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._guard = LaunchGuard("n8n was stopped before it started")
        self._commands: set[subprocess.Popen[str]] = set()  # CLI commands running now
        self.ready_seconds: float | None = None

    @property
    def base_url(self) -> str:
        """Root URL of the instance on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> N8nProcess:
        """Start n8n and wait until its REST API answers; raise N8nStartError otherwise (a
        port taken in between: see ready_on_host_ports)."""
        self.ready_seconds = ready_on_host_ports(self, timeout)
        return self

    @property
    def host_port(self) -> int:
        """The port of this machine n8n's server listens on."""
        return self.port

    def launch(self) -> None:
        """Start the n8n process, without waiting for it."""
        with self._guard.launching(), open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                dies_with_us([str(self.launcher), "start"]),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # so that stop() reaches the task runner too
            )

    def move_to(self, port: int, broker_port: int) -> None:
        """Stop the launched process; the next launch uses these ports."""
        self.stop()
        self.port = port
        self.env["N8N_PORT"] = str(port)
        self.env["N8N_RUNNERS_BROKER_PORT"] = str(broker_port)

    def is_running(self) -> bool:
        """Whether the n8n process is still alive."""
        return self._process is not None and self._process.poll() is None

    def logs(self) -> str:
        """Everything n8n printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an n8n CLI command (``export:credentials`` ...) with this instance's environment.
        Killed outright if this process dies: orphaned, an export whose reader is gone spins at
        full CPU and never reaches its SIGTERM handler (seen: 4 minutes of CPU and counting)."""
        with self._guard.launching():
            command = subprocess.Popen(
                dies_with_us([str(self.launcher), *args], "KILL"),
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self._commands.add(command)
        try:
            stdout, stderr = command.communicate(timeout=timeout)
        except BaseException:  # its timeout, or an interrupt: it ends with us
            command.kill()
            command.communicate()
            raise
        finally:
            self._commands.discard(command)
        return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)

    def stop(self) -> None:
        """Stop n8n and its children; kill them if they do not stop in time."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # The task runner and other children may outlive the main process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the process and remove its log folder; it cannot be started again."""
        with self._guard.stopping():
            # A CLI command (an export, a migration) would hold the run's end up to its
            # timeout: it is killed, its caller sees it fail.
            for command in list(self._commands):
                with contextlib.suppress(ProcessLookupError):
                    command.kill()
            self.stop()
        self._log_dir.cleanup()
