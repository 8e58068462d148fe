"""A Docker engine reached over SSH (DOCKER_HOST=ssh://...), as an operator reaches one on
another host: this machine's engine behind an sshd on loopback, with a user of its own (in the
docker group) whose key runs ``docker system dial-stdio`` and forwards to the loopback, nothing
else. Both SSH clients get the fixture's configuration where an operator's own would be: the
``ssh`` program (testcontainers, the verify runtime's tunnel) through a wrapper first on PATH,
the Docker SDK's paramiko in $HOME/.ssh (pytester's HOME, which the verify runs get)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker.client import DockerClient

from tests.repository_servers import (
    require_tool,
    running_sshd,
    system_user,
    unavailable,
)

ENGINE_USER = "nrvdocker"
ENGINE_HOST_ALIAS = "nrv-engine"
# What the engine user's key may run: the Docker client's own command, nothing else.
DIAL_ONLY_SCRIPT = """#!/bin/sh
if [ "$SSH_ORIGINAL_COMMAND" = "docker system dial-stdio" ]; then
    exec docker system dial-stdio
fi
echo "this key runs docker system dial-stdio only" >&2
exit 1
"""


@dataclass(frozen=True)
class SshEngine:
    """DOCKER_HOST for the engine over SSH; ``log_path`` is its sshd's log."""

    docker_host: str
    log_path: Path


@pytest.fixture
def ssh_engine(
    docker_client: DockerClient,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SshEngine]:
    """This machine's engine as DOCKER_HOST=ssh://nrv-engine:PORT, for one test (DOCKER_HOST and
    PATH are set for it and its subprocesses; ``docker_client`` stays on the local socket)."""
    require_tool("sshd")
    ssh = require_tool("ssh")
    if os.geteuid() != 0:
        unavailable("the SSH engine needs root: sshd logs in a system user of its own")
    if shutil.which("docker") is None:
        unavailable("no docker program: `docker system dial-stdio` serves the engine over SSH")
    entry = system_user(ENGINE_USER, shell="/bin/sh", groups=("docker",))
    gate = Path(entry.pw_dir) / "dial-stdio-only"
    gate.write_text(DIAL_ONLY_SCRIPT)
    gate.chmod(0o755)
    allowed = (
        "AllowTcpForwarding local",
        "PermitOpen 127.0.0.1:*",
        f"ForceCommand {gate}",
    )
    work = tmp_path_factory.mktemp("ssh-engine")
    with running_sshd(entry, work, ENGINE_HOST_ALIAS, allowed, forwards=True) as sshd:
        wrappers = work / "bin"
        wrappers.mkdir()
        wrapper = wrappers / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {ssh} -F {sshd.ssh_config} "$@"\n')
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
        dot_ssh = Path(os.environ["HOME"]) / ".ssh"  # pytester's: made for this test
        dot_ssh.mkdir(mode=0o700)
        shutil.copy(sshd.ssh_config, dot_ssh / "config")
        shutil.copy(sshd.known_hosts, dot_ssh / "known_hosts")
        # With the port: the Docker SDK asks ssh for port 22 when DOCKER_HOST names none.
        docker_host = f"ssh://{ENGINE_HOST_ALIAS}:{sshd.port}"
        monkeypatch.setenv("DOCKER_HOST", docker_host)
        yield SshEngine(docker_host, sshd.log_path)
