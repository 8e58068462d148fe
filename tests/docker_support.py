"""Docker helpers for this project's tests: the locally built n8n image and n8n containers."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import select
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.client import DockerClient
from docker.models.containers import Container

from backup.n8n import npm
from backup.n8n.api import N8nApi
from backup.n8n.container import BootingContainer, inspect_n8n_container
from backup.n8n.folder import read_encryption_key
from backup.n8n.instances.base import QUIET_ENV
from backup.n8n.instances.docker_sessions import SESSION_LABEL
from backup.n8n.instances.ports import free_ports
from backup.n8n.instances.readiness import wait_until_ready
from tests.cli_support import ROOT
from verify.bootstrap import create_owner_and_api_key

IMAGE_TEMPLATE = "n8n-restore-verify/n8n:{version}"
DOCKER_ARGS = ("--runtime", "docker", "--n8n-image", IMAGE_TEMPLATE)
PROCESS_ARGS = ("--runtime", "process")
TEST_LABEL = {SESSION_LABEL: "tests"}


def _run_build_script(script: str, *args: str) -> str:
    result = subprocess.run(
        [str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, f"{script} failed: {result.stderr[-2000:]}"
    return result.stdout.strip().splitlines()[-1]


def build_image(version: str = npm.DEFAULT_N8N_VERSION) -> str:
    """Build (or reuse) the local n8n image with the project's script; return its name."""
    return _run_build_script("build-n8n-image.sh", version)


def build_postgres_image() -> str:
    """Build (or reuse) the local PostgreSQL 18 image; return its name."""
    return _run_build_script("build-postgres-image.sh")


@dataclass
class N8nTestContainer:
    """An n8n container with its data on a named volume and its port published on loopback."""

    container: Container
    volume: str
    url: str
    encryption_key: str = field(repr=False)
    api_key: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return str(self.container.name)

    def api(self) -> N8nApi:
        return N8nApi(self.url, self.api_key)


def run_n8n_container(
    client: DockerClient,
    image: str,
    encryption_key: str | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    host_network: bool = False,
    network_name: str | None = None,
    bind_folder: Path | None = None,
) -> N8nTestContainer:
    """Start an n8n container like an operator would (named volume, port on 127.0.0.1).

    Without ``encryption_key`` n8n makes its own and keeps it in the config file on the volume,
    as with a plain ``docker run``; with one, it is passed as N8N_ENCRYPTION_KEY. With
    ``host_network`` it shares this machine's loopback (to reach a PostgreSQL server there) and
    listens on a free port of 127.0.0.1 instead of publishing one.
    """
    env = {**QUIET_ENV, **(extra_env or {})}
    if encryption_key:
        env["N8N_ENCRYPTION_KEY"] = encryption_key
    name = f"n8n-test-{secrets.token_hex(4)}"
    volume = client.volumes.create(name=f"{name}-data", labels=TEST_LABEL).name
    data: str = volume if bind_folder is None else str(bind_folder)  # a host folder instead
    network: dict[str, Any] = {"ports": {"5678/tcp": ("127.0.0.1", None)}}
    if network_name:
        network["network"] = network_name
    if host_network:
        port, broker_port = free_ports(2)
        env.update(
            N8N_PORT=str(port),
            N8N_LISTEN_ADDRESS="127.0.0.1",
            N8N_RUNNERS_BROKER_PORT=str(broker_port),
        )
        network = {"network_mode": "host"}
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        environment=env,
        volumes={data: {"bind": "/home/node/.n8n", "mode": "rw"}},
        labels=TEST_LABEL,
        **network,
    )
    container.reload()
    if not host_network:
        port = container.attrs["NetworkSettings"]["Ports"]["5678/tcp"][0]["HostPort"]
    handle = N8nTestContainer(container, str(volume), f"http://127.0.0.1:{port}", "")
    wait_ready(handle)
    found = inspect_n8n_container(name)
    handle.encryption_key = read_encryption_key(found.folder, found.environment)
    return handle


def wait_ready(handle: N8nTestContainer, timeout: float = 240) -> None:
    wait_until_ready(BootingContainer(handle.container, handle.url), timeout)


def set_up_owner(handle: N8nTestContainer) -> None:
    handle.api_key = create_owner_and_api_key(handle.url)


def remove(client: DockerClient, handle: N8nTestContainer) -> None:
    handle.container.remove(force=True, v=True)
    client.volumes.get(handle.volume).remove(force=True)


def engine_objects(client: DockerClient, filters: dict[str, str]) -> set[str]:
    """Names of the containers (running or not), volumes and networks that match ``filters``
    (a container removed while listed, as verify's one-off commands are, is left out)."""
    names = {
        f"container {c.name}"
        for c in client.containers.list(all=True, filters=filters, ignore_removed=True)
    }
    names |= {f"volume {v.name}" for v in client.volumes.list(filters=filters)}
    return names | {f"network {n.name}" for n in client.networks.list(filters=filters)}


def left_behind(client: DockerClient, filters: dict[str, str], before: set[str]) -> list[str]:
    """What matches ``filters`` now and did not before: the engine outlives test runs, and a
    run that was killed may have left objects of its own, which are not this run's doing."""
    return sorted(engine_objects(client, filters) - before)


class EngineOverTcp:
    """This machine's Docker engine served on a loopback TCP port, as a remote engine is reached
    (DOCKER_HOST=tcp://...), with TLS and client certificates when ``tls`` is given (what
    dockerd --tlsverify does). It keeps the request lines and the bind mounts that clients ask
    for (nothing else: requests carry the encryption key in n8n's environment), and counts the
    connections whose TLS handshake it refused."""

    _REQUEST = re.compile(rb"((?:GET|POST|PUT|DELETE|HEAD) /\S+) HTTP/1\.1")
    _BINDS = re.compile(rb'"Binds": (\[[^\]]*\])')

    def __init__(
        self, engine_socket: str = "/var/run/docker.sock", tls: ssl.SSLContext | None = None
    ) -> None:
        self._engine_socket = engine_socket
        self._tls = tls
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._server.getsockname()[1]}"
        self.requests: list[str] = []
        self.binds: list[str] = []
        self.refused_handshakes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """Carry one connection to the engine and back, in one thread (an SSL socket must not
        be read and written from two)."""
        if self._tls is not None:
            try:
                client.settimeout(10)  # a client that never finishes its handshake
                client = self._tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self.refused_handshakes += 1
                client.close()
                return
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tail = b""  # the end of the previous chunk: a request line may be cut in two
        with client, engine:
            try:
                engine.connect(self._engine_socket)
            except OSError:
                return
            reading = [client, engine]
            while engine in reading:
                buffered = [s for s in reading if isinstance(s, ssl.SSLSocket) and s.pending()]
                for source in buffered or select.select(reading, [], [])[0]:
                    try:
                        chunk = source.recv(1 << 16)
                    except OSError:
                        chunk = b""
                    if source is client:
                        if not chunk:  # the client is done sending: the engine may still answer
                            reading.remove(client)
                            with contextlib.suppress(OSError):
                                engine.shutdown(socket.SHUT_WR)
                            continue
                        self._record(tail + chunk)
                        tail = chunk[-512:]
                    elif not chunk:
                        reading.remove(engine)  # the engine is done: so is the connection
                        continue
                    try:
                        (engine if source is client else client).sendall(chunk)
                    except OSError:
                        return

    def _record(self, data: bytes) -> None:
        with self._lock:
            for match in self._REQUEST.finditer(data):
                line = match.group(1).decode("ascii", "replace")
                if not self.requests or self.requests[-1] != line:
                    self.requests.append(line)
            self.binds += [
                str(item) for found in self._BINDS.findall(data) for item in json.loads(found)
            ]

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()
