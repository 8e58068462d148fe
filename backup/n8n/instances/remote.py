"""n8n on a Docker engine of another machine (DOCKER_HOST=tcp://... or ssh://...).

Such an engine sees nothing of this machine's files, and its containers' addresses are not
reachable from here. So the restored ``.n8n`` folder is shipped into a named volume through the
engine's API, n8n's database is read from a consistent copy that a container makes of it
(``VACUUM INTO``) and fetched through the API, and n8n is reached through a relay container that
publishes one port on the engine's host and forwards it to n8n on the internal network: n8n itself
keeps no route out. Over SSH that port is on the engine host's loopback, reached through an SSH
tunnel.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from docker.client import DockerClient
from docker.errors import DockerException
from docker.models.containers import Container

from backup.atomic import new_private_file
from backup.errors import N8nStartError, SqliteBackupError
from backup.n8n.docker_engine import engine_host, over_ssh
from backup.n8n.instances.ports import LOOPBACK, PORT_ATTEMPTS, await_listening, free_port
from backup.n8n.instances.process import dies_with_us
from backup.n8n.sqlite import N8nDatabase

N8N_PORT = 5678
TUNNEL_TIMEOUT_SECONDS = 30
# What ssh says when the local end of a forward cannot be bound.
_PORT_TAKEN_HINTS = ("Address already in use", "cannot listen to port")
NODE_UID = 1000
# Where n8n's own sqlite3 module lies: this project's image, then the official one.
_N8N_PACKAGES = ["/opt/n8n/node_modules/n8n", "/usr/local/lib/node_modules/n8n"]
_OPEN_SQLITE = (
    f"const sqlite3 = require(require.resolve('sqlite3', {{paths: {json.dumps(_N8N_PACKAGES)}}}));"
    "const fail = (e) => { if (e) { console.error(e.message); process.exit(1); } };"
)
UNCHANGED = "unchanged"
# argv: database, copy, the stamp of the last copy. Prints the database's stamp (inode, size and
# modification time of the file and of its WAL), then "unchanged" when it is the last copy's
# (no copy made), else copies in a read transaction of its own: n8n's writers go on meanwhile
# (WAL). The stamp is taken before the copy: a write in between only makes the next read copy
# again.
COPY_DATABASE_JS = _OPEN_SQLITE + (
    "const fs = require('fs');"
    "const [database, copy, last] = process.argv.slice(1);"
    "const stamp = [database, database + '-wal'].map((f) => {"
    " try { const s = fs.statSync(f, {bigint: true}); return `${s.ino}:${s.size}:${s.mtimeNs}`; }"
    " catch (e) { return '-'; } }).join('/');"
    "console.log(stamp);"
    f"if (stamp === last) {{ console.log('{UNCHANGED}'); process.exit(0); }}"
    "try { fs.unlinkSync(copy); } catch (e) {}"
    "const db = new sqlite3.Database(database, sqlite3.OPEN_READONLY, fail);"
    "db.configure('busyTimeout', 30000);"
    "db.run('VACUUM INTO ?', [copy], (e) => { fail(e); db.close(fail); });"
)
# argv: database, JSON list of statements, run in one transaction (rolled back on an error).
EXECUTE_JS = _OPEN_SQLITE + (
    "const [database, statements] = process.argv.slice(1);"
    "const db = new sqlite3.Database(database, fail);"
    "db.configure('busyTimeout', 30000);"
    "db.exec(JSON.parse(statements).join(';\\n'), (e) => { fail(e); db.close(fail); });"
)
# argv: target host, port. Forwards every connection to n8n and nothing else.
RELAY_JS = (
    "const net = require('net');"
    "const [host, port] = process.argv.slice(1);"
    "net.createServer((client) => {"
    " const upstream = net.connect(Number(port), host);"
    " client.pipe(upstream).pipe(client);"
    " upstream.on('error', () => client.destroy());"
    " client.on('error', () => upstream.destroy());"
    "}).listen(Number(port));"
)
COPY_IN_CONTAINER = "/tmp/n8n-restore-verify-read.sqlite"

# Runs ``node -e SCRIPT ARGS`` beside n8n's data and returns what it printed; then, unless it
# printed UNCHANGED, copies the file named by the third argument (if any) out to the fourth.
# Raises SqliteBackupError when the script fails.
RunsNode = Callable[[str, list[str], str | None, Path | None], str]


def publish_address(engine_url: str) -> str:
    """The engine-side address a relay's port is published on: over SSH, the engine host's
    loopback (reached through an SSH tunnel, so nothing is opened to its network); else the
    engine's own IP when DOCKER_HOST gives one (a loopback engine stays on loopback), or every
    interface for a host name."""
    if over_ssh(engine_url):
        return LOOPBACK
    try:
        return str(ipaddress.ip_address(engine_host(engine_url)))
    except ValueError:
        return "0.0.0.0"  # a host name: which of the engine's interfaces it is, only it knows


def _owned_by_node(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = NODE_UID
    info.uname = info.gname = "node"
    return info


def ship_folder(
    client: DockerClient,
    image: str,
    volume: str,
    folder: Path,
    mount_point: str,
    labels: dict[str, str],
) -> None:
    """Copy ``folder``'s contents into a new named volume, owned by the image's user (uid 1000),
    through the engine's archive API (a created, never started, container holds the volume).
    The volume is first mounted where n8n's folder is in the image, so that it takes that
    folder's owner (the user n8n runs as must be able to create files next to its database)."""
    client.volumes.create(volume, labels=labels)
    holder = client.containers.create(
        image, volumes={volume: {"bind": mount_point, "mode": "rw"}}, labels=labels
    )
    try:
        with tempfile.TemporaryFile(dir=folder.parent) as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for entry in sorted(folder.iterdir()):
                    tar.add(entry, arcname=entry.name, filter=_owned_by_node)
            archive.seek(0)
            if not holder.put_archive(mount_point, archive):
                raise N8nStartError(f"the Docker engine refused the restored data of {folder}")
    finally:
        holder.remove(force=True)


def fetch_file(container: Container, path: str, destination: Path) -> None:
    """Copy one regular file out of a container into ``destination`` (0600, replaced whole)."""
    stream, _ = container.get_archive(path)
    with tempfile.TemporaryFile(dir=destination.parent) as archive:
        for chunk in stream:
            archive.write(chunk)
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r") as tar:
            member = tar.next()
            source = tar.extractfile(member) if member is not None and member.isfile() else None
            if source is None:
                raise SqliteBackupError(f"{path} in the n8n container is not a regular file")
            partial = destination.with_name(destination.name + ".part")
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            descriptor = new_private_file(partial)
            with os.fdopen(descriptor, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            os.replace(partial, destination)


class ContainerDatabase(N8nDatabase):
    """n8n's SQLite database inside the n8n container's volume, as n8n sees it now.

    Every read works on a fresh consistent copy that the container makes (``VACUUM INTO``) and
    this machine fetches; writes run in the container in one transaction.
    """

    def __init__(
        self, run_node: RunsNode, database_in_container: str, copy: Path, table_prefix: str
    ) -> None:
        super().__init__(copy, table_prefix)
        self._run_node = run_node
        self._database = database_in_container
        self._stamp = ""  # of the database when the local copy was made
        self._copying = threading.Lock()  # verify reads from more than one thread
        self._held = threading.local()  # a thread inside one_view(): its copy is not refreshed

    @contextlib.contextmanager
    def one_view(self) -> Iterator[None]:
        """This thread's reads within use the copy made at the first of them: one exec and at
        most one fetch for all of them. (A read of another thread may still replace the copy
        with a newer one meanwhile; each read is consistent in itself either way.)"""
        outermost = not getattr(self._held, "active", False)
        if outermost:
            self._refresh()
            self._held.active = True
        try:
            yield
        finally:
            if outermost:
                self._held.active = False

    def _refresh(self) -> None:
        """Make the local copy n8n's database as it is now (copied again only if it changed).
        A reader still on the previous copy keeps it: the new one replaces it by rename."""
        if getattr(self._held, "active", False):
            return
        with self._copying:
            said = self._run_node(
                COPY_DATABASE_JS,
                [self._database, COPY_IN_CONTAINER, self._stamp],
                COPY_IN_CONTAINER,
                self.path,
            )
            self._stamp = said.splitlines()[0] if said.strip() else ""

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._refresh()
        return super()._query(sql, params)

    def _rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        self._refresh()
        return super()._rows(sql)

    def _execute_in_one_transaction(self, statements: list[str]) -> None:
        transaction = ["BEGIN", *statements, "COMMIT"]
        self._run_node(EXECUTE_JS, [self._database, json.dumps(transaction)], None, None)

    def use_wal(self) -> None:
        """Switch the database in the volume to WAL mode (what n8n 2.x does at start)."""
        self._run_node(
            EXECUTE_JS, [self._database, json.dumps(["PRAGMA journal_mode = WAL"])], None, None
        )


class SshTunnel:
    """A port on this machine's loopback forwarded to a port on the loopback of an ssh://
    engine's host, by this machine's ``ssh`` program (``ssh -N -L``), with the user and port of
    DOCKER_HOST: the program testcontainers and the docker CLI reach such an engine with."""

    def __init__(self, engine_url: str) -> None:
        parts = urlsplit(engine_url)
        self._engine_url = engine_url
        self._destination = ["--", engine_host(engine_url)]
        if parts.port is not None:
            self._destination[:0] = ["-p", str(parts.port)]
        if parts.username:
            self._destination[:0] = ["-l", parts.username]
        self._process: subprocess.Popen[bytes] | None = None
        self._said: IO[bytes] | None = None

    def open(self, remote_port: int) -> int:
        """Start forwarding to ``remote_port`` on the engine host's loopback; return the local
        port, once ssh has logged in and itself listens on it. ssh starts again on another
        local port when the chosen one was taken in between (up to PORT_ATTEMPTS times)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            local_port = free_port()
            said = self._forward(local_port, remote_port)
            if said is None:
                return local_port
            self.close()
            if attempt == PORT_ATTEMPTS or not any(hint in said for hint in _PORT_TAKEN_HINTS):
                last = said.strip().splitlines()[-1:] or ["ssh exited"]
                raise N8nStartError(
                    f"ssh could not forward a port from {self._engine_url}: {last[0]}"
                )
        raise AssertionError("unreachable")

    def _forward(self, local_port: int, remote_port: int) -> str | None:
        """Run ssh forwarding ``local_port``; None once ssh listens on it, else what ssh said
        before it exited."""
        forward = f"{LOOPBACK}:{local_port}:{LOOPBACK}:{remote_port}"
        options = ["-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        # A connection of its own: through a shared master (ControlMaster in the user's ssh
        # configuration) the master would hold the forward, not this ssh.
        options += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        # ssh's messages go to a file: a pipe nobody reads while the tunnel runs could fill up.
        self._said = tempfile.TemporaryFile()  # noqa: SIM115 (open as long as the tunnel)
        try:
            process = subprocess.Popen(
                # Ends with this run even when it is killed outright (the SIGKILL of CI).
                dies_with_us(["ssh", "-N", *options, "-L", forward, *self._destination]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._said,
                start_new_session=True,  # Ctrl-C is ours to handle: close() ends it
            )
        except OSError as exc:
            self.close()
            raise N8nStartError(f"cannot run ssh for {self._engine_url}: {exc}") from None
        self._process = process
        try:
            # Only ssh's own listener counts: a program that took the port meanwhile would get
            # what is meant for the engine's n8n (its API key among it).
            if await_listening(process, local_port, TUNNEL_TIMEOUT_SECONDS):
                return None
        except TimeoutError:
            self.close()
            raise N8nStartError(
                f"ssh did not forward a port from {self._engine_url} within "
                f"{TUNNEL_TIMEOUT_SECONDS} s: check that `ssh {self._destination[-1]}` logs in"
            ) from None
        self._said.seek(0)
        return self._said.read().decode(errors="replace") or f"exit status {process.returncode}"

    def close(self) -> None:
        """End the forwarding."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._said is not None:
            self._said.close()
            self._said = None


class Relay:
    """A container on the internal network and on the engine's default bridge that forwards one
    published port to n8n; n8n stays on the internal network alone. On an ssh:// engine the port
    is published on the engine host's loopback and reached through an SSH tunnel."""

    def __init__(self, client: DockerClient, image: str, labels: dict[str, str]) -> None:
        self._client = client
        self._image = image
        self._labels = labels
        self._container: Container | None = None
        self._tunnel: SshTunnel | None = None

    def start(self, network: str, target: str, engine_url: str) -> str:
        """Start forwarding to ``target``:5678 on ``network``; return the URL reaching n8n."""
        try:
            container = self._client.containers.run(
                self._image,
                entrypoint=["node", "-e", RELAY_JS, target, str(N8N_PORT)],
                ports={f"{N8N_PORT}/tcp": (publish_address(engine_url), None)},
                labels=self._labels,
                detach=True,
            )
            self._container = container
            self._client.networks.get(network).connect(container)
            container.reload()
            published = container.attrs["NetworkSettings"]["Ports"][f"{N8N_PORT}/tcp"][0]
            port = int(published["HostPort"])
        except (DockerException, KeyError, IndexError, TypeError, ValueError) as exc:
            raise N8nStartError(f"cannot start the relay to n8n on {engine_url}: {exc}") from None
        if not over_ssh(engine_url):
            return published_url(engine_url, port)
        self._tunnel = SshTunnel(engine_url)
        return f"http://{LOOPBACK}:{self._tunnel.open(port)}"

    def stop(self) -> None:
        """End the tunnel, if any, and remove the relay container."""
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None
        if self._container is not None:
            with contextlib.suppress(DockerException):
                self._container.remove(force=True)
            self._container = None


def published_url(engine_url: str, port: int) -> str:
    """The URL of ``port`` published on a tcp:// engine's host (an IPv6 address in brackets)."""
    host = engine_host(engine_url)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"
