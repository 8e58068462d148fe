"""Real servers for restic repositories on loopback: REST (``rclone serve restic``) and SFTP
(OpenSSH's ``sshd`` with a host key, a client key and a system user of its own).

Both fixtures are session-scoped and listen on 127.0.0.1 only. A missing tool skips the tests
that need it, naming the Debian package; under CI (``CI=true``) it fails them instead.

The SFTP server needs root: it logs in a dedicated system user (``nrvsftp``), created on first
use. Its repositories live in a folder of that user's home, made fresh for each session and
removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import pytest

from backup.n8n.instances.ports import await_listening, free_port

HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3

SSHD = "/usr/sbin/sshd"
SFTP_USER = "nrvsftp"
SFTP_HOST_ALIAS = "nrv-sftp"

# The Debian package that provides each tool.
PACKAGES = {
    "restic": "restic",
    "rclone": "rclone",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it under CI, where every server must be available."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The absolute path of a tool that these servers need; skips (fails under CI) without it."""
    found = SSHD if name == "sshd" and os.access(SSHD, os.X_OK) else shutil.which(name)
    if found is None:
        unavailable(f"no {name}: install Debian's {PACKAGES[name]} package")
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has finished)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


class ServerProcess:
    """A server subprocess on a loopback port: started, awaited, and stopped with its group."""

    def __init__(self, name: str, command: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until its port accepts connections.

        Raises ``RuntimeError`` if the server exits or does not answer within the timeout.
        """
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if await_listening(self._process, self.port, READY_TIMEOUT):
                return
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not answer on {HOST}:{self.port} within {READY_TIMEOUT:.0f} "
                f"s: {self.log_tail()}"
            ) from None
        self.stop()
        raise RuntimeError(f"{self.name} exited with {self._process.returncode}: {self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server and what it forked, killing whatever lingers.

        sshd's per-connection processes leave the server's process group (setsid), so they are
        found by parent id and signalled one by one.
        """
        process = self._process
        if process is not None and process.poll() is None:
            children = _children(process.pid)
            self._signal(signal.SIGTERM, children)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL, children)
                process.wait(timeout=STOP_TIMEOUT)
            deadline = time.monotonic() + STOP_TIMEOUT
            while (alive := [pid for pid in children if _running(pid)]) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, signum: signal.Signals, children: list[int]) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"


def start_on_free_port(
    name: str, command_for: Callable[[int], list[str]], log_path: Path
) -> ServerProcess:
    """Start a server on a free loopback port, on another port if that one was taken meanwhile."""
    failure: RuntimeError | None = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        server = ServerProcess(name, command_for(port), port, log_path)
        try:
            server.start()
        except RuntimeError as exc:
            failure = exc
            continue
        return server
    raise RuntimeError(f"{name} failed to start {START_ATTEMPTS} times") from failure


# --- REST: rclone serve restic --------------------------------------------------------------


@dataclass(frozen=True)
class RestServer:
    """A running ``rclone serve restic`` on loopback.

    ``url`` is the repository at the server's root; ``repo_url(name)`` gives further
    repositories under paths of the same server, each stored in ``data_dir / name``.
    """

    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        """The restic URL of the repository at the server's root."""
        return f"rest:http://{HOST}:{self.port}/"

    def repo_url(self, name: str) -> str:
        """The restic URL of the repository ``name`` (a path under the root, no slashes)."""
        if not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"not a repository name: {name!r}")
        return f"{self.url}{name}/"

    def restic_options(self) -> list[str]:
        """Extra restic options this backend needs: none (the same call as for SFTP)."""
        return []


@pytest.fixture(scope="session")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    """A restic REST server (rclone) on 127.0.0.1 for the whole session."""
    require_tool("restic")
    rclone = require_tool("rclone")
    root = tmp_path_factory.mktemp("rest-server")
    data_dir = root / "data"
    data_dir.mkdir()
    config = root / "rclone.conf"
    config.touch()
    log_path = root / "rclone.log"

    def command(port: int) -> list[str]:
        return [
            rclone,
            "serve",
            "restic",
            "--config",
            str(config),
            "--addr",
            f"{HOST}:{port}",
            str(data_dir),
        ]

    process = start_on_free_port("rclone serve restic", command, log_path)
    try:
        yield RestServer(port=process.port, data_dir=data_dir, log_path=log_path)
    finally:
        process.stop()


# --- SFTP: sshd with a user of its own ------------------------------------------------------


@dataclass(frozen=True)
class SftpServer:
    """A running ``sshd`` on loopback that serves SFTP to one user, by key only.

    ``repo_url(name)`` gives a repository in ``root / name`` (a folder that the user owns);
    restic reaches it with ``restic_options()``, which point ssh at ``ssh_config``.
    """

    port: int
    user: str
    root: Path
    ssh_config: Path
    host_alias: str
    log_path: Path

    @property
    def sftp_command(self) -> str:
        """The command restic runs to talk SFTP (``sftp.command``)."""
        return f"ssh -F {self.ssh_config} {self.host_alias} -s sftp"

    def repo_url(self, name: str) -> str:
        """The restic URL of the repository ``name`` (a folder under ``root``, no slashes)."""
        if not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"not a repository name: {name!r}")
        return f"sftp:{self.host_alias}:{self.root / name}"

    def restic_options(self) -> list[str]:
        """The restic options that make it connect through our ssh client configuration."""
        return ["-o", f"sftp.command={self.sftp_command}"]


def system_user(
    name: str, shell: str = "/usr/sbin/nologin", groups: tuple[str, ...] = ()
) -> pwd.struct_passwd:
    """A system user that logs in over SSH, created if missing, with a usable home.

    Its password is ``*``: no password matches it, and, unlike the ``!`` that useradd sets, sshd
    (with ``UsePAM no``) does not take it for a locked account, which would refuse keys too.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = f"/home/{name}"
        subprocess.run(
            ["useradd", "--system", "--create-home", "--home-dir", home, "--shell", shell, name],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(name)
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True)
    home = Path(entry.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    # StrictModes: the home and everything in it that sshd reads must be the user's (or root's)
    # and writable by nobody else.
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return entry


def ed25519_key_pair(keygen: str, path: Path, comment: str) -> str:
    """A fresh ed25519 key pair without passphrase at ``path``; returns the public key line."""
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


# What the SFTP user may do: SFTP, nothing else.
SFTP_ONLY = (
    "AllowTcpForwarding no",
    "Subsystem sftp internal-sftp",
    "ForceCommand internal-sftp",
)


def sshd_config_text(
    port: int,
    host_key: Path,
    authorized_keys: Path,
    pid_file: Path,
    user: str = SFTP_USER,
    allowed: tuple[str, ...] = SFTP_ONLY,
) -> str:
    """An sshd configuration: ``user`` alone logs in, by key only, on loopback; ``allowed``
    says what that user may do."""
    return "\n".join(
        [
            f"ListenAddress {HOST}",
            "AddressFamily inet",
            f"Port {port}",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            f"AuthorizedKeysFile {authorized_keys}",
            "AuthorizedPrincipalsFile none",
            "StrictModes yes",
            "PubkeyAuthentication yes",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "IgnoreRhosts yes",
            "UsePAM no",
            "PermitRootLogin no",
            f"AllowUsers {user}",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "PermitTunnel no",
            "PermitTTY no",
            *allowed,
            "LogLevel INFO",
            "",
        ]
    )


def ssh_client_config(
    port: int,
    client_key: Path,
    known_hosts: Path,
    alias: str = SFTP_HOST_ALIAS,
    user: str = SFTP_USER,
    forwards: bool = False,
) -> str:
    """An ssh client configuration: host ``alias`` is the server on loopback, by key only;
    port forwards given on the command line are dropped unless ``forwards``."""
    return "\n".join(
        [
            f"Host {alias}",
            f"    HostName {HOST}",
            f"    Port {port}",
            f"    User {user}",
            f"    IdentityFile {client_key}",
            "    IdentitiesOnly yes",
            "    IdentityAgent none",
            "    PreferredAuthentications publickey",
            "    PasswordAuthentication no",
            "    KbdInteractiveAuthentication no",
            f"    UserKnownHostsFile {known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    HostKeyAlgorithms ssh-ed25519",
            "    UpdateHostKeys no",
            "    CheckHostIP no",
            "    BatchMode yes",
            "    ControlMaster no",
            "    ControlPath none",
            "    ForwardAgent no",
            "    ForwardX11 no",
            f"    ClearAllForwardings {'no' if forwards else 'yes'}",
            "    ConnectTimeout 10",
            "    LogLevel ERROR",
            "",
        ]
    )


@dataclass(frozen=True)
class SshdRun:
    """An sshd on loopback for one user: ``ssh -F ssh_config ALIAS`` logs in as that user."""

    port: int
    session: Path  # a private folder in the user's home, removed afterwards
    ssh_config: Path
    known_hosts: Path
    log_path: Path


@contextlib.contextmanager
def running_sshd(
    entry: pwd.struct_passwd,
    work: Path,
    alias: str,
    allowed: tuple[str, ...],
    forwards: bool = False,
) -> Iterator[SshdRun]:
    """sshd on a free loopback port that lets the user ``entry`` in with a fresh key and do what
    ``allowed`` says, with a client configuration for host ``alias``."""
    keygen = require_tool("ssh-keygen")
    host_key = work / "host_ed25519"
    client_key = work / "client_ed25519"
    host_public = ed25519_key_pair(keygen, host_key, f"{alias}-host")
    client_public = ed25519_key_pair(keygen, client_key, f"{alias}-client")
    known_hosts = work / "known_hosts"
    sshd_config = work / "sshd_config"
    ssh_config = work / "ssh_config"
    log_path = work / "sshd.log"

    # A folder of this session in the user's home: sshd's StrictModes walk over the authorized
    # keys' path stops at the home, so no world-writable parent (/tmp) is on it.
    session = Path(tempfile.mkdtemp(prefix="session-", dir=entry.pw_dir))
    try:
        os.chown(session, entry.pw_uid, entry.pw_gid)
        session.chmod(0o700)
        authorized_keys = session / "authorized_keys"
        authorized_keys.write_text(client_public + "\n")
        os.chown(authorized_keys, entry.pw_uid, entry.pw_gid)
        authorized_keys.chmod(0o600)

        # The privilege separation folder, absent until Debian's own sshd ever ran.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

        def command(port: int) -> list[str]:
            sshd_config.write_text(
                sshd_config_text(
                    port, host_key, authorized_keys, work / "sshd.pid", entry.pw_name, allowed
                )
            )
            return [SSHD, "-D", "-e", "-f", str(sshd_config)]

        process = start_on_free_port("sshd", command, log_path)
        try:
            key_type, key_data = host_public.split()[:2]
            known_hosts.write_text(f"[{HOST}]:{process.port} {key_type} {key_data}\n")
            ssh_config.write_text(
                ssh_client_config(
                    process.port, client_key, known_hosts, alias, entry.pw_name, forwards
                )
            )
            ssh_config.chmod(0o600)
            yield SshdRun(process.port, session, ssh_config, known_hosts, log_path)
        finally:
            process.stop()
    finally:
        shutil.rmtree(session, ignore_errors=True)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """An SFTP server (OpenSSH) on 127.0.0.1 for the whole session, with a user of its own."""
    require_tool("restic")
    require_tool("sshd")
    require_tool("ssh")
    if os.geteuid() != 0:
        unavailable("the SFTP server needs root: sshd logs in a system user of its own")

    entry = system_user(SFTP_USER)
    work = tmp_path_factory.mktemp("sftp-server")
    if any(character.isspace() for character in str(work)):
        # restic splits sftp.command at whitespace.
        raise RuntimeError(f"the SFTP fixture needs a temporary folder without spaces: {work}")
    with running_sshd(entry, work, SFTP_HOST_ALIAS, SFTP_ONLY) as sshd:
        repos = sshd.session / "repos"
        repos.mkdir(mode=0o700)
        os.chown(repos, entry.pw_uid, entry.pw_gid)
        yield SftpServer(
            port=sshd.port,
            user=SFTP_USER,
            root=repos,
            ssh_config=sshd.ssh_config,
            host_alias=SFTP_HOST_ALIAS,
            log_path=sshd.log_path,
        )
