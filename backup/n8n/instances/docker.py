"""n8n in a container through testcontainers, on a Docker network with no route outside.

On this machine's engine the restored ``.n8n`` folder is bind-mounted at /home/node/.n8n and owned
by uid 1000, as in the official image, and the container is reached at its address on the internal
network (such networks publish no ports). On a remote engine (DOCKER_HOST over the network) the
folder is shipped into a volume and n8n is reached through a relay (see ``remote``). The container
is always removed, also when a test fails or the run is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backup.extras import missing_extra

try:
    from docker.client import DockerClient
    from docker.errors import DockerException, ImageNotFound
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.exceptions import ContainerStartException
    from testcontainers.core.network import Network
except ImportError as exc:  # an optional part of the install
    raise missing_extra("docker", exc) from None

from backup.errors import BackupError, InputError, N8nStartError, SqliteBackupError, one_line
from backup.n8n.container import exec_n8n
from backup.n8n.docker_engine import (
    ENGINE_ERRORS,
    engine_client,
    engine_host,
    keep_the_engines_authority,
    remote_engine,
)
from backup.n8n.instances.base import (
    DEFAULT_BOOT_TIMEOUT,
    QUIET_ENV,
    BootsOnEnter,
    LaunchGuard,
)
from backup.n8n.instances.docker_sessions import remove_session, session_labels
from backup.n8n.instances.ports import free_ports
from backup.n8n.instances.process import LOOPBACK_ENV, ready_on_host_ports
from backup.n8n.instances.readiness import wait_until_ready
from backup.n8n.instances.remote import (
    N8N_PORT,
    NODE_UID,
    UNCHANGED,
    ContainerDatabase,
    Relay,
    fetch_file,
    ship_folder,
)
from backup.n8n.sqlite import DATABASE_NAME
from backup.ownership import chown_tree

if TYPE_CHECKING:
    from docker.models.containers import Container

    from backup.n8n.postgres import PostgresTarget

POSTGRES_PORT = 5432
CONTAINER_N8N_FOLDER = "/home/node/.n8n"
RYUK_DISABLED_ENV = "TESTCONTAINERS_RYUK_DISABLED"


def engine_problem() -> str | None:
    """Why the Docker engine DOCKER_HOST names (this machine's socket by default) does not
    answer, on one line; None when it answers."""
    try:
        client = engine_client(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except ENGINE_ERRORS as exc:
        # The SDK wraps the reason (a refused certificate, a refused connection) three deep.
        reason: BaseException = exc
        seen = {id(reason)}
        while (
            deeper := reason.__cause__
            or (None if reason.__suppress_context__ else reason.__context__)
        ) is not None and id(deeper) not in seen:
            reason = deeper
            seen.add(id(reason))
        return one_line(str(reason)) or type(reason).__name__
    return None


def engine_facts(image: str) -> tuple[str | None, str | None]:
    """The engine's version and ``image``'s short id, as far as the engine says (for reports)."""
    try:
        client = engine_client(timeout=5)
    except DockerException:
        return None, None
    try:
        version = str(client.version().get("Version") or "") or None
        try:
            short_id: str | None = str(client.images.get(image).short_id)
        except DockerException:
            short_id = None
        return version, short_id
    except DockerException:
        return None, None
    finally:
        client.close()


def missing_images(images: list[str]) -> list[str]:
    """Which of ``images`` the Docker engine does not have (no registry is asked)."""
    client = engine_client()
    try:
        missing = []
        for image in dict.fromkeys(images):
            try:
                client.images.get(image)
            except ImageNotFound:
                missing.append(image)
        return missing
    finally:
        client.close()


def disable_ryuk_without_registry() -> None:
    """Ryuk (testcontainers' reaper) is an image that must be pulled; without a registry it
    cannot start, so our own cleanup (finally blocks and the session sweep) takes its place."""
    if RYUK_DISABLED_ENV in os.environ:
        return
    client = engine_client()
    try:
        has_ryuk = any("ryuk" in tag for image in client.images.list() for tag in image.tags)
    finally:
        client.close()
    if not has_ryuk:
        os.environ[RYUK_DISABLED_ENV] = "true"


class IsolatedNetwork:
    """An internal Docker network (no route outside) for one verify session."""

    def __init__(self) -> None:
        self.session = uuid.uuid4().hex[:12]
        self.labels = session_labels(self.session)  # of everything the session makes
        # testcontainers makes Docker clients of its own, from here on (containers need this
        # network first).
        keep_the_engines_authority()
        self.network = Network(docker_network_kw={"internal": True, "labels": self.labels})
        self.network.create()

    @property
    def name(self) -> str:
        """The network's name."""
        return self.network.name

    def close(self) -> None:
        """Remove every container and volume left by the session, then the network itself."""
        client = engine_client()
        try:
            remove_session(client, self.session)
        finally:
            client.close()


class N8nContainer(BootsOnEnter):
    """One n8n container on restored data; same interface as the process driver's N8nProcess."""

    def __init__(
        self,
        image: str,
        user_folder: Path,
        encryption_key: str | None,
        network: IsolatedNetwork,
        extra_env: dict[str, str] | None = None,
        boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
        *,
        host_network: bool = False,
    ) -> None:
        self.boot_timeout = boot_timeout
        self.image = image
        self.network = network
        n8n_folder = user_folder / ".n8n"
        self.engine_url = remote_engine()
        if self.engine_url is not None and host_network:
            raise InputError(
                "--test-credentials needs a Docker engine on this machine (n8n on the host's "
                f"network); DOCKER_HOST names a remote one ({engine_host(self.engine_url)})"
            )
        self._labels = network.labels
        # On a remote engine: the volume the folder is shipped into, once, before n8n's first use.
        self._volume = f"n8n-restore-verify-{network.session}-{uuid.uuid4().hex[:8]}"
        self._shipped = False
        self._ship_lock = threading.Lock()
        self._relay: Relay | None = None
        self._relay_url: str | None = None
        env = {**QUIET_ENV, **(extra_env or {})}
        # On the host's network (to reach services on its loopback) n8n listens on loopback,
        # on ports of its own.
        self._host_port: int | None = None
        if host_network:
            self._host_port, broker_port = free_ports(2)
            env.update(
                {
                    **LOOPBACK_ENV,
                    "N8N_PORT": str(self._host_port),
                    "N8N_RUNNERS_BROKER_PORT": str(broker_port),
                }
            )
        if encryption_key is not None:
            env["N8N_ENCRYPTION_KEY"] = encryption_key
        self._env = env
        self._n8n_folder = n8n_folder
        # Files we could not hand to uid 1000 (not root): n8n runs as their owner instead. A
        # shipped volume is written as uid 1000 already.
        local_owner = os.geteuid() != 0 and self.engine_url is None
        self._user = f"{os.getuid()}:{os.getgid()}" if local_owner else None
        self._data = str(n8n_folder) if self.engine_url is None else self._volume
        self._started = False
        self._engine: DockerClient | None = None
        self._engine_closed = False  # by stop(): later commands fail instead of logging in again
        self._engine_lock = threading.Lock()
        self._guard = LaunchGuard("the n8n container was stopped before it started")
        self._one_offs: set[Container] = set()  # running commands, removed by stop()
        kwargs: dict[str, str] = {}
        if host_network:
            kwargs["network_mode"] = "host"
        if self._user is not None:
            kwargs["user"] = self._user
        self._container = (
            DockerContainer(image)
            .with_envs(**env)
            .with_volume_mapping(self._data, CONTAINER_N8N_FOLDER, "rw")
            .with_kwargs(labels=self._labels, **kwargs)
        )
        if not host_network:
            self._container.with_network(network.network)
        self.hand_over_files()
        self._address: str | None = None
        self.ready_seconds: float | None = None

    def hand_over_files(self) -> None:
        """Give the restored folder to the image's user (uid 1000), when we are root (a
        shipped volume's files are uid 1000's already)."""
        if os.geteuid() == 0 and self.engine_url is None:
            chown_tree(self._n8n_folder, NODE_UID, NODE_UID)

    def _client(self) -> DockerClient:
        """One client for this container's commands, reads and clean-up (over SSH, every new
        client logs in again); closed by stop()."""
        with self._engine_lock:
            if self._engine_closed:
                raise DockerException("the n8n container was stopped")
            if self._engine is None:
                self._engine = engine_client()
            return self._engine

    def _ship_once(self) -> None:
        """On a remote engine: the restored folder into the container's volume, before n8n (or
        one of its commands) first runs; a no-op on this machine's engine."""
        if self.engine_url is None:
            return
        with self._ship_lock:
            if self._shipped:
                return
            try:
                ship_folder(
                    self._client(),
                    self.image,
                    self._volume,
                    self._n8n_folder,
                    CONTAINER_N8N_FOLDER,
                    self._labels,
                )
            except DockerException as exc:
                raise N8nStartError(
                    f"cannot ship the restored data to the Docker engine at "
                    f"{engine_host(self.engine_url)}: {exc}"
                ) from None
            self._shipped = True

    def live_database(self, table_prefix: str) -> ContainerDatabase:
        """n8n's database as n8n in this container sees it, read through the engine (for a
        remote engine, whose volume this machine cannot open)."""
        copy = self._n8n_folder.parent / "database-read.sqlite"
        return ContainerDatabase(
            self._run_node, f"{CONTAINER_N8N_FOLDER}/{DATABASE_NAME}", copy, table_prefix
        )

    def _run_node(
        self, script: str, args: list[str], fetch: str | None, destination: Path | None
    ) -> str:
        """``node -e script args`` in the running n8n container, or before n8n starts in a
        one-off container on its data; then, unless the script printed UNCHANGED, copy
        ``fetch`` out of it to ``destination``. Returns what the script printed."""
        self._ship_once()
        command = ["node", "-e", script, *args]
        try:
            client = self._client()
            if self._started:
                container = self._running(client)
                code, (stdout, stderr) = container.exec_run(command, demux=True)
                printed = (stdout or b"").decode("utf-8", errors="replace")
                said = (stderr or b"").decode("utf-8", errors="replace")
                one_off = None
            else:
                container = one_off = self._one_off(client, command[1:], entrypoint=command[:1])
                code = int(one_off.wait()["StatusCode"])
                printed, said = _output(one_off)
            try:
                if code != 0:
                    raise SqliteBackupError(
                        f"n8n's database in the container: {said.strip()[-300:] or code}"
                    )
                unchanged = UNCHANGED in printed.splitlines()
                if fetch is not None and destination is not None and not unchanged:
                    fetch_file(container, fetch, destination)
            finally:
                if one_off is not None:
                    one_off.remove(force=True)
        except ENGINE_ERRORS as exc:
            raise SqliteBackupError(f"n8n's database in the container: {exc}") from None
        return printed

    @property
    def base_url(self) -> str:
        """The container's address on the internal network (remote engine: the relay's)."""
        if self._relay_url is not None:
            return self._relay_url
        if self._host_port is not None:
            return f"http://127.0.0.1:{self._host_port}"
        if self._address is None:
            raise N8nStartError("the n8n container has not started")
        return f"http://{self._address}:{N8N_PORT}"

    def start(self, timeout: float) -> N8nContainer:
        """Create and start the container, then wait for n8n's REST API (on the host's
        network, a port taken in between: see ready_on_host_ports)."""
        if self._host_port is not None:
            self.ready_seconds = ready_on_host_ports(self, timeout)
        else:
            self.launch()
            self.ready_seconds = wait_until_ready(self, timeout)
        return self

    @property
    def host_port(self) -> int:
        """The port of this machine n8n listens on (on the host's network only)."""
        if self._host_port is None:
            raise N8nStartError("the n8n container is not on the host's network")
        return self._host_port

    def move_to(self, port: int, broker_port: int) -> None:
        """Remove the launched container; the next launch listens on these ports."""
        with contextlib.suppress(DockerException, ContainerStartException, AttributeError):
            self._container.stop()
        self._started = False
        self._host_port = port
        self._container.with_env("N8N_PORT", str(port))
        self._container.with_env("N8N_RUNNERS_BROKER_PORT", str(broker_port))

    def launch(self) -> None:
        """Create and start the container (and a remote engine's relay), without waiting."""
        with self._guard.launching():
            self._create_and_start()

    def _create_and_start(self) -> None:
        try:
            self._ship_once()
            self._container.start()
            self._started = True  # from now on, n8n commands run in it (before: one-offs)
            if self._host_port is None:
                self._address = _address_on(self._container, self.network)
            if self.engine_url is not None and self._address is not None:
                client = self._container.get_docker_client().client
                self._relay = Relay(client, self.image, self._labels)
                self._relay_url = self._relay.start(
                    self.network.name, self._address, self.engine_url
                )
        except ImageNotFound:
            raise N8nStartError(
                f"image {self.image} is not on this machine and cannot be pulled: build one with "
                "scripts/build-n8n-image.sh VERSION and pass --n8n-image "
                "'n8n-restore-verify/n8n:{version}'"
            ) from None
        except DockerException as exc:
            raise N8nStartError(f"cannot start a container from {self.image}: {exc}") from None

    def is_running(self) -> bool:
        """Whether the container is still running."""
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
            return bool(wrapped.status == "running")
        except (DockerException, ContainerStartException, AttributeError):
            return False

    def logs(self) -> str:
        """The container's output so far."""
        try:
            stdout, stderr = self._container.get_logs()
        except (DockerException, ContainerStartException):
            return ""  # never created (for example: no such image)
        return (stdout + stderr).decode("utf-8", errors="replace")

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an n8n command with the container's environment and data: ``docker exec`` once
        started, before that in a one-off container on the same network and folder."""
        started = self._started
        if not started:
            try:
                self._ship_once()
            except N8nStartError as exc:
                return subprocess.CompletedProcess(["n8n", *args], 1, "", str(exc))
        try:
            client = self._client()
            if started:
                return exec_n8n(self._running(client), *args)
            with self._guard.launching():
                container = self._one_off(client, list(args), environment=self._env)
                self._one_offs.add(container)
            try:
                code = int(container.wait(timeout=timeout)["StatusCode"])
                stdout, stderr = _output(container)
            finally:
                self._one_offs.discard(container)
                container.remove(force=True)
        except ENGINE_ERRORS as exc:  # OSError too: the engine's read timed out
            return subprocess.CompletedProcess(["n8n", *args], 1, "", f"docker: {exc}")
        except N8nStartError as exc:  # stopped meanwhile
            return subprocess.CompletedProcess(["n8n", *args], 1, "", str(exc))
        return subprocess.CompletedProcess(["n8n", *args], code, stdout, stderr)

    def _running(self, client: DockerClient) -> Container:
        """The started n8n container, through ``client``: testcontainers' own client reaches an
        ssh:// engine through the ssh program, a way that breaks when an exec ends."""
        return client.containers.get(self._container.get_wrapped_container().id)

    def _one_off(
        self,
        client: DockerClient,
        command: list[str],
        *,
        entrypoint: list[str] | None = None,
        environment: dict[str, str] | None = None,
    ) -> Container:
        """A detached container of the image on n8n's data and network (removed by the caller)."""
        return client.containers.run(
            self.image,
            command=command,
            entrypoint=entrypoint,
            environment=environment,
            volumes={self._data: {"bind": CONTAINER_N8N_FOLDER, "mode": "rw"}},
            network=self.network.name,
            labels=self._labels,
            user=self._user,
            detach=True,
        )

    def stop(self) -> None:
        """Remove the container (with its anonymous volumes), its relay and its shipped data,
        and any one-off command container still running."""
        with self._guard.stopping():
            running_commands = list(self._one_offs)
        for command in running_commands:  # its wait() in another thread returns
            with contextlib.suppress(*ENGINE_ERRORS):
                command.remove(force=True)
        if self._relay is not None:
            self._relay.stop()
        with contextlib.suppress(DockerException, ContainerStartException, AttributeError):
            self._container.stop()
        try:
            with contextlib.suppress(*ENGINE_ERRORS):
                if self._shipped:
                    self._client().volumes.get(self._volume).remove(force=True)
        finally:
            # A command still running in another thread fails now; none logs in again.
            with self._engine_lock:
                engine, self._engine = self._engine, None
                self._engine_closed = True
            if engine is not None:
                engine.close()

    def close(self) -> None:
        """Same as stop(): the restored folder belongs to the caller."""
        self.stop()


def _output(container: Container) -> tuple[str, str]:
    """What an exited container printed: its standard output and its standard error."""
    return (
        container.logs(stdout=True, stderr=False).decode("utf-8", "replace"),
        container.logs(stdout=False, stderr=True).decode("utf-8", "replace"),
    )


def _address_on(container: DockerContainer, network: IsolatedNetwork) -> str:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    networks: dict[str, Any] = wrapped.attrs["NetworkSettings"]["Networks"]
    return str(networks[network.name]["IPAddress"])


class PostgresContainer:
    """A throwaway PostgreSQL server on the internal network (official image's env contract)."""

    def __init__(
        self, image: str, network: IsolatedNetwork, boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    ) -> None:
        self.image = image
        self.boot_timeout = boot_timeout
        self.password = secrets.token_urlsafe(18)
        self._container = (
            DockerContainer(image)
            .with_env("POSTGRES_PASSWORD", self.password)
            .with_network(network.network)
            .with_kwargs(labels=network.labels)
        )
        self.network = network

    def start(self, timeout: float) -> PostgresTarget:
        """Start the server and wait until it accepts a login; return its admin target."""
        try:
            self._container.start()
            address = _address_on(self._container, self.network)
        except DockerException as exc:
            raise N8nStartError(f"cannot start PostgreSQL from {self.image}: {exc}") from None
        from backup.n8n.postgres import PostgresTarget

        target = PostgresTarget(address, POSTGRES_PORT, "postgres", "postgres", self.password)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with target.connect():
                    return target
            except BackupError:
                if time.monotonic() > deadline:
                    raise N8nStartError(
                        f"PostgreSQL from {self.image} refused logins for {timeout:.0f} s"
                    ) from None
                time.sleep(0.5)

    def stop(self) -> None:
        """Remove the container."""
        with contextlib.suppress(DockerException, ContainerStartException, AttributeError):
            self._container.stop()

    def __enter__(self) -> PostgresTarget:
        """Start the server (removed again if that fails); the admin target to use."""
        try:
            return self.start(self.boot_timeout)
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
