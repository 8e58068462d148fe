"""n8n running in a Docker container: where its data is, which key it uses, where its API is.

Everything is read through the Docker SDK (``docker inspect``); nothing runs in the container,
so an image without a sqlite3 program (the official one) is no obstacle. The database is copied
with SQLite's online backup from the mount's folder on the Docker host, while n8n keeps running.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backup.extras import missing_extra

try:
    from docker.client import DockerClient
    from docker.errors import DockerException, NotFound
    from docker.models.containers import Container
except ImportError as exc:  # an optional part of the install
    raise missing_extra("docker", exc) from None

from backup.errors import InputError, SourceError
from backup.n8n.binary_data import GENERAL_STORAGE_ENV, STORAGE_ENV, storage_roots
from backup.n8n.docker_engine import engine_client
from backup.n8n.extensions import extension_folders
from backup.n8n.folder import N8nFolder, locate

if TYPE_CHECKING:
    from backup.n8n.postgres import PostgresTarget

DEFAULT_USER_FOLDER = "/home/node"
N8N_PORT = "5678/tcp"
POSTGRES_PORT = "5432/tcp"


@dataclass(frozen=True)
class ContainerSource:
    """What a snapshot or a restore needs to know about an n8n container."""

    name: str
    folder: N8nFolder
    environment: dict[str, str] = field(repr=False)
    api_url: str | None
    database_kind: str = "sqlite"  # or "postgres" (DB_TYPE=postgresdb)
    running: bool = True
    # N8N_CUSTOM_EXTENSIONS folders, as this host sees them (those in a mount only).
    extension_folders: tuple[Path, ...] = ()
    # Where n8n keeps execution binary data, as this host sees it (see backup.n8n.binary_data).
    binary_roots: tuple[Path, ...] = ()


@contextlib.contextmanager
def docker_client() -> Iterator[DockerClient]:
    """A client for the local engine; a one-line error when none answers."""
    try:
        client = engine_client()
        client.ping()
    except DockerException:
        raise SourceError(
            "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): start dockerd"
        ) from None
    try:
        yield client
    finally:
        client.close()


def get_container(client: DockerClient, name: str) -> Container:
    """The container called ``name``; a one-line error if there is none."""
    try:
        return client.containers.get(name)
    except NotFound:
        raise InputError(f"no container named {name!r}: check `docker ps -a`") from None


def _environment(attrs: dict[str, Any]) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item)
    return dict(pairs)


def _deepest_mount(attrs: dict[str, Any], container_path: str) -> dict[str, Any] | None:
    """The container's mount whose destination holds ``container_path`` most closely."""
    wanted = container_path.rstrip("/")
    holding = [
        mount
        for mount in attrs.get("Mounts") or []
        if wanted == (destination := str(mount.get("Destination", "")).rstrip("/"))
        or wanted.startswith(destination + "/")
    ]
    return max(holding, key=lambda mount: len(str(mount["Destination"])), default=None)


def _inside_mount(mount: dict[str, Any], container_path: str) -> str:
    return container_path.rstrip("/")[len(str(mount["Destination"]).rstrip("/")) :].lstrip("/")


def _host_path(attrs: dict[str, Any], container_path: str) -> Path | None:
    """Where a container path lies on the Docker host, when a bind mount or volume holds it."""
    mount = _deepest_mount(attrs, container_path)
    if mount is None or mount.get("Type") == "tmpfs":
        return None
    inner = _inside_mount(mount, container_path)
    return Path(mount["Source"]) / inner if inner else Path(mount["Source"])


def _data_mount(attrs: dict[str, Any], user_folder: str) -> tuple[Path, str]:
    """Host folder of the mount that holds ``<user_folder>/.n8n``, and the path inside it."""
    wanted = f"{user_folder.rstrip('/')}/.n8n"
    mount = _deepest_mount(attrs, wanted)
    if mount is None:
        raise InputError(
            f"container {attrs['Name'].lstrip('/')} keeps {wanted} in its own writable layer, "
            "not in a volume or bind mount: its data is lost with the container; mount a volume "
            "there first"
        )
    if mount.get("Type") == "tmpfs":
        raise InputError(
            f"container {attrs['Name'].lstrip('/')} keeps {wanted} on a tmpfs mount, "
            "which is emptied when the container stops: move the data to a volume"
        )
    return Path(mount["Source"]), _inside_mount(mount, wanted)


def _binary_roots(
    attrs: dict[str, Any], environment: dict[str, str], host_folder: Path
) -> tuple[Path, ...]:
    mapped = {
        name: str(host)
        for name in (STORAGE_ENV, GENERAL_STORAGE_ENV)
        if (configured := environment.get(name, "").strip())
        and (host := _host_path(attrs, configured)) is not None
    }
    return tuple(storage_roots(host_folder, mapped))


def runs_n8n(container: Container) -> bool:
    """Whether the container is n8n: its processes (running) or its command (stopped)."""
    container.reload()
    if container.status == "running":
        with contextlib.suppress(DockerException):
            processes = container.top().get("Processes") or []
            return any("n8n" in " ".join(map(str, row)) for row in processes)
    config = container.attrs.get("Config") or {}
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return any("n8n" in str(part) for part in command)


def data_on_tmpfs(container: Container) -> bool:
    """Whether n8n's data folder lies on a tmpfs mount of the container (lost at its stop)."""
    user_folder = _environment(container.attrs).get("N8N_USER_FOLDER", DEFAULT_USER_FOLDER)
    wanted = f"{user_folder.rstrip('/')}/.n8n"
    mounted = [
        str(mount.get("Destination", ""))
        for mount in container.attrs.get("Mounts") or []
        if mount.get("Type") == "tmpfs"
    ]
    mounted += list((container.attrs.get("HostConfig") or {}).get("Tmpfs") or {})
    return any(
        wanted == path.rstrip("/") or wanted.startswith(path.rstrip("/") + "/") for path in mounted
    )


def containers_sharing_data(client: DockerClient, n8n: Container) -> list[str]:
    """Running containers, other than ``n8n``, that mount the host folder holding n8n's data
    (the same volume or bind, or a folder inside or around it)."""
    user_folder = _environment(n8n.attrs).get("N8N_USER_FOLDER", DEFAULT_USER_FOLDER)
    data, _ = _data_mount(n8n.attrs, user_folder)
    sharing = []
    for other in client.containers.list(ignore_removed=True):  # others come and go meanwhile
        if other.id == n8n.id:
            continue
        for mount in other.attrs.get("Mounts") or []:
            source = Path(str(mount.get("Source", "")))
            if source == data or data in source.parents or source in data.parents:
                sharing.append(str(other.name))
                break
    return sharing


@dataclass(frozen=True)
class BootingContainer:
    """An n8n container that was just started, as the readiness wait sees it."""

    container: Container
    base_url: str

    def is_running(self) -> bool:
        """Whether the container still runs."""
        self.container.reload()
        return bool(self.container.status == "running")

    def logs(self) -> str:
        """The container's recent output."""
        raw: bytes = self.container.logs(tail=50)
        return raw.decode("utf-8", errors="replace")


def stops_since(client: DockerClient, container: Container, since: float) -> list[str]:
    """Stop, kill and die events of ``container`` since the Unix time ``since``: a ``docker
    stop`` from outside shows here at once, while the container may still be running (n8n
    can take the whole stop timeout to exit)."""
    events = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": container.id, "event": ["stop", "kill", "die"]},
    )
    return [
        str(event.get("status") or event.get("Action"))
        for event in events
        if int(event.get("timeNano", 0)) >= since * 1e9  # the query's seconds are coarse
    ]


def _published_api_url(attrs: dict[str, Any]) -> str | None:
    bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(N8N_PORT) or []
    for binding in bindings:
        host = binding.get("HostIp") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{binding['HostPort']}"
    return None


def inspect_n8n_container(name: str) -> ContainerSource:
    """Find the data folder, the environment and the published API of an n8n container."""
    with docker_client() as client:
        attrs = get_container(client, name).attrs
    environment = _environment(attrs)
    user_folder = environment.get("N8N_USER_FOLDER", DEFAULT_USER_FOLDER)
    source, inner = _data_mount(attrs, user_folder)
    host_folder = source / inner if inner else source
    if not host_folder.is_dir():
        raise SourceError(
            f"the .n8n data of container {name} is at {host_folder} on the Docker host, which "
            "this machine cannot read: run n8n-backup on the Docker host, as root"
        )
    db_type = environment.get("DB_TYPE", "sqlite")
    if db_type not in ("sqlite", "postgresdb"):
        raise InputError(f"container {name} runs n8n on {db_type}, which is not supported")
    kind = "sqlite" if db_type == "sqlite" else "postgres"
    return ContainerSource(
        name,
        locate(host_folder, with_database=kind == "sqlite"),
        environment,
        _published_api_url(attrs),
        kind,
        running=bool((attrs.get("State") or {}).get("Running")),
        binary_roots=_binary_roots(attrs, environment, host_folder),
        extension_folders=tuple(
            host
            for folder in extension_folders(environment)
            if (host := _host_path(attrs, str(folder))) is not None
        ),
    )


def exec_n8n(container: Container, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker exec`` an n8n CLI command in a running container (its environment applies)."""
    exit_code, (stdout, stderr) = container.exec_run(["n8n", *args], demux=True)
    return subprocess.CompletedProcess(
        ["n8n", *args],
        exit_code,
        (stdout or b"").decode("utf-8", errors="replace"),
        (stderr or b"").decode("utf-8", errors="replace"),
    )


@dataclass(frozen=True)
class ContainerCli:
    """Runs n8n CLI commands in an existing container."""

    container: Container

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``n8n ARGS`` in the container."""
        return exec_n8n(self.container, *args)


def postgres_target_for_container(
    postgres_container: str,
    n8n: ContainerSource | None,
    schema: str,
    table_prefix: str,
) -> PostgresTarget:
    """The database of n8n in Docker, found from the PostgreSQL container's name.

    The address is the container's published 5432 (on this machine) or its address on its
    network; user, password, database, schema and prefix are n8n's own DB_* settings when the
    n8n container is known, else the PostgreSQL container's POSTGRES_* ones.
    """
    with docker_client() as client:
        attrs = get_container(client, postgres_container).attrs
    pg_env = _environment(attrs)
    n8n_env = n8n.environment if n8n else {}
    bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(POSTGRES_PORT) or []
    if bindings:
        host_ip = bindings[0].get("HostIp") or "127.0.0.1"
        host = "127.0.0.1" if host_ip in ("0.0.0.0", "::", "") else host_ip
        port = int(bindings[0]["HostPort"])
    else:
        networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
        addresses = [net.get("IPAddress") for net in networks.values() if net.get("IPAddress")]
        if not addresses:
            raise InputError(
                f"container {postgres_container} has no published 5432 and no network address: "
                "give --postgres DSN"
            )
        host, port = str(addresses[0]), 5432
    user = n8n_env.get("DB_POSTGRESDB_USER") or pg_env.get("POSTGRES_USER", "postgres")
    from backup.n8n.postgres import PostgresTarget

    return PostgresTarget(
        host=host,
        port=port,
        user=user,
        dbname=n8n_env.get("DB_POSTGRESDB_DATABASE") or pg_env.get("POSTGRES_DB", user),
        password=(
            n8n_env.get("DB_POSTGRESDB_PASSWORD")
            or pg_env.get("POSTGRES_PASSWORD")
            or os.environ.get("PGPASSWORD", "")
        ),
        schema=n8n_env.get("DB_POSTGRESDB_SCHEMA") or schema,
        table_prefix=n8n_env.get("DB_TABLE_PREFIX", table_prefix),
    )
