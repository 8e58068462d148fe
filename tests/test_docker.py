"""Docker: snapshot n8n that runs in a container, restore into one, verify in containers.

Uses a real Docker engine and the locally built n8n image (scripts/build-n8n-image.sh); a
missing engine is a failure here, never a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from docker.client import DockerClient

from backup.data_lock import exclusive
from backup.keystore import KeyStore
from backup.manifest import Manifest, WorkflowEntry
from backup.n8n.api import N8nApi
from backup.n8n.container import inspect_n8n_container, runs_n8n
from backup.n8n.instances import remote
from backup.n8n.instances.base import QUIET_ENV
from backup.n8n.instances.docker_sessions import OWNER_LABEL, SESSION_LABEL, session_labels
from backup.n8n.instances.ports import free_port
from backup.n8n.instances.remote import SshTunnel
from tests.cli_support import ROOT, backup_command, run_backup_cli, snapshot_under_load
from tests.docker_support import (
    DOCKER_ARGS,
    TEST_LABEL,
    N8nTestContainer,
    engine_objects,
    left_behind,
    remove,
    run_n8n_container,
    set_up_owner,
)
from tests.n8n_support import seed
from tests.ssh_engine import ENGINE_HOST_ALIAS, SshEngine
from tests.verify_runner import (
    VERIFY_CHECKS,
    another_boots_record,
    assert_wrong_key_caught_before_boot,
    configure_only,
    private_reports,
    report_with_attachments,
    resign_manifest,
    run_verify,
    start_verify,
    verify_command,
    wrong_key_store,
)
from verify.bootstrap import sample_workflow


@pytest.fixture(scope="module")
def source_container(
    docker_client: DockerClient, n8n_image: str
) -> Iterator[tuple[N8nTestContainer, list[str]]]:
    handle = run_n8n_container(docker_client, n8n_image)
    try:
        set_up_owner(handle)
        api = handle.api()
        secrets_seeded = seed(api, corpus=False, generated=20)
        api.close()
        yield handle, secrets_seeded
    finally:
        remove(docker_client, handle)


@pytest.fixture(scope="module")
def container_snapshot(
    source_container: tuple[N8nTestContainer, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A snapshot of the container taken through the Docker SDK while a writer keeps writing."""
    handle, _ = source_container
    base = tmp_path_factory.mktemp("container-backups")
    path, during = snapshot_under_load(
        handle.url, handle.api_key, base / "snapshots", base / "keys", "--container", handle.name
    )
    assert during > 0, "the writer did not overlap the snapshot"
    return path, base / "keys"


def test_container_source_is_found_through_the_sdk(
    source_container: tuple[N8nTestContainer, list[str]],
) -> None:
    handle, _ = source_container
    found = inspect_n8n_container(handle.name)
    assert found.folder.database.is_file()
    assert "N8N_ENCRYPTION_KEY" not in found.environment  # the key is in the volume's config
    assert json.loads(found.folder.config.read_text())["encryptionKey"] == handle.encryption_key
    assert found.api_url == handle.url


def test_container_snapshot_under_load_verifies_in_docker(
    pytester: pytest.Pytester,
    container_snapshot: tuple[Path, Path],
    source_container: tuple[N8nTestContainer, list[str]],
    docker_client: DockerClient,
) -> None:
    path, keys = container_snapshot
    manifest = Manifest.load(path)
    assert manifest.counts.workflows > 30
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    run = run_verify(pytester, path, keys, *DOCKER_ARGS)
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = report_with_attachments(run.report)
    assert "docker (n8n-restore-verify/n8n:2.40.7, internal network)" in text
    assert re.search(r"image sha256:[0-9a-f]{10,}, Docker engine \d+\.", text), "no image id"
    handle, seeded = source_container
    for secret in [handle.encryption_key, handle.api_key, *seeded]:
        assert secret not in text
    assert left_behind(docker_client, ours, before) == [], "verify left something behind"


def test_verify_on_an_engine_reached_over_ssh(
    pytester: pytest.Pytester,
    container_snapshot: tuple[Path, Path],
    docker_client: DockerClient,
    ssh_engine: SshEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_HOST=ssh://...: the engine is driven through ssh (``docker system dial-stdio``),
    the data shipped into a volume, n8n reached through a relay published on the engine host's
    loopback and an SSH tunnel; the verdicts of a local run, and nothing left behind."""
    path, keys = container_snapshot
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    run = run_verify(pytester, path, keys, *DOCKER_ARGS, "--quiet-seconds", "2")
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = run.report.read_text(encoding="utf-8")
    assert (
        f"remote engine {ENGINE_HOST_ALIAS}: data shipped into a volume, n8n reached through a "
        "relay container and an SSH tunnel"
    ) in text
    assert left_behind(docker_client, ours, before) == []
    assert "Accepted publickey for nrvdocker" in ssh_engine.log_path.read_text()
    tunnels = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and _is_tunnel(Path("/proc", pid))
    ]
    assert tunnels == [], "an SSH tunnel outlived the run"

    # A login the engine's host refuses: one line naming DOCKER_HOST, nothing created.
    refused = ssh_engine.docker_host.replace("ssh://", "ssh://nobody@")
    monkeypatch.setenv("DOCKER_HOST", refused)
    result = pytester.runpytest_subprocess(
        str(ROOT / "verify"), "--snapshots", str(path), "--key-store", str(keys), *DOCKER_ARGS,
        timeout=300,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"DOCKER_HOST={refused} does not answer" in errors[0]
    assert left_behind(docker_client, ours, before) == []


def test_a_program_on_the_tunnels_port_is_not_taken_for_the_tunnel(
    ssh_engine: SshEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program took the local port chosen for the SSH tunnel before ssh could bind it
    and accepts connections there: the tunnel is not believed to be up (what is meant for the
    engine's n8n would reach that program), and ssh forwards from another port."""
    engine_side = socket.create_server(("127.0.0.1", 0))  # what the tunnel must reach
    impostor = socket.create_server(("127.0.0.1", 0))
    chosen = [impostor.getsockname()[1]]
    asked: list[int] = []

    def port_taken_first() -> int:
        port = chosen.pop() if chosen else free_port()
        asked.append(port)
        return port

    monkeypatch.setattr(remote, "free_port", port_taken_first)
    tunnel = SshTunnel(ssh_engine.docker_host)
    try:
        local = tunnel.open(engine_side.getsockname()[1])
        assert asked[0] == impostor.getsockname()[1] and len(asked) == 2, asked
        assert local == asked[1]
        with socket.create_connection(("127.0.0.1", local), timeout=10):
            engine_side.settimeout(10)
            reached, _ = engine_side.accept()  # the engine's side, not the impostor, got it
            reached.close()
    finally:
        tunnel.close()
        engine_side.close()
        impostor.close()


def _is_tunnel(process: Path) -> bool:
    """Whether the process is an ``ssh -N -L`` forwarding to the test's engine host (one the
    verify runtime starts)."""
    try:
        arguments = (process / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"ssh" in arguments[0] and {b"-N", b"-L", ENGINE_HOST_ALIAS.encode()} <= set(arguments)


def test_docker_runtime_names_damage_and_wrong_key(
    pytester: pytest.Pytester, container_snapshot: tuple[Path, Path], tmp_path: Path
) -> None:
    path, _ = container_snapshot
    fingerprint = Manifest.load(path).key_fingerprint
    wrong_store = wrong_key_store(tmp_path / "wrong", path, "definitely-the-wrong-key-000")
    run = run_verify(pytester, path, wrong_store, *DOCKER_ARGS, "--quiet-seconds", "2")
    assert_wrong_key_caught_before_boot(run, path, fingerprint)


def database_digest(handle: N8nTestContainer) -> str:
    folder = inspect_n8n_container(handle.name).folder
    return hashlib.sha256(folder.database.read_bytes()).hexdigest()


def test_restore_with_mismatched_key_is_refused_and_changes_nothing(
    docker_client: DockerClient, n8n_image: str, container_snapshot: tuple[Path, Path]
) -> None:
    path, _ = container_snapshot
    target = run_n8n_container(docker_client, n8n_image)  # a key of its own
    try:
        started = target.container.attrs["State"]["StartedAt"]
        before = database_digest(target)
        result = run_backup_cli("restore", str(path), "--container", target.name)
        assert result.returncode == 12, result.stderr
        message = result.stderr.strip().splitlines()
        assert len(message) == 1 and "nothing was changed" in message[0]
        assert Manifest.load(path).key_fingerprint in message[0]
        target.container.reload()
        assert target.container.status == "running"
        assert target.container.attrs["State"]["StartedAt"] == started
        assert database_digest(target) == before
    finally:
        remove(docker_client, target)


def test_restore_into_container_round_trips(
    docker_client: DockerClient,
    n8n_image: str,
    container_snapshot: tuple[Path, Path],
    source_container: tuple[N8nTestContainer, list[str]],
) -> None:
    path, _ = container_snapshot
    source, _ = source_container
    manifest = Manifest.load(path)
    target = run_n8n_container(docker_client, n8n_image, encryption_key=source.encryption_key)
    try:
        result = run_backup_cli("restore", str(path), "--container", target.name)
        assert result.returncode == 0, result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        assert f"{manifest.counts.workflows} workflows load" in summary
        assert f"{manifest.counts.credentials} credentials decrypt" in summary
        rollback = Path(summary.rsplit(" kept as ", 1)[1])
        assert rollback.is_file() and rollback.stat().st_mode & 0o077 == 0
        # The source's API key is in the restored database and works with the same key. The
        # published port changed with the restart.
        url = inspect_n8n_container(target.name).api_url
        assert url is not None
        with N8nApi(url, source.api_key) as api:
            names = {w["name"] for w in api.iter_workflows()}
        assert {w.name for w in manifest.workflows} <= names
    finally:
        remove(docker_client, target)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_verify_leaves_no_container(
    docker_client: DockerClient,
    container_snapshot: tuple[Path, Path],
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    """Ctrl-C, or SIGTERM (a CI job's timeout, docker stop), while a restore boots: the
    container and the network go all the same."""
    path, keys = container_snapshot
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    verify = subprocess.Popen(
        verify_command(
            path,
            keys,
            *DOCKER_ARGS,
            "--html",
            str(tmp_path / "r.html"),
            "--junitxml",
            str(tmp_path / "r.xml"),
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        started = ""
        while "container" not in started and time.monotonic() < deadline:
            time.sleep(0.2)
            started = ", ".join(left_behind(docker_client, ours, before))
        assert "container" in started, "verify never started a container"
        verify.send_signal(stop)
        assert verify.wait(timeout=120) == pytest.ExitCode.INTERRUPTED
    finally:
        if verify.poll() is None:  # a failed test leaves no verify to disturb the next ones
            verify.kill()
            verify.wait()
    assert left_behind(docker_client, ours, before) == [], f"{stop.name} left something behind"


def test_a_killed_verify_leaves_its_containers_to_the_next_run(
    docker_client: DockerClient, container_snapshot: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGKILL (the OOM killer) while n8n runs in its container, with testcontainers' reaper
    off (no registry): the container keeps running on the snapshot's data. The next verify on
    that engine removes it with the session's volumes and network, and leaves alone a session
    still going, one it cannot judge (another machine's, or another boot's), and one where a
    single object names the killed run and another a live one."""
    path, keys = container_snapshot
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    args = (*DOCKER_ARGS, *private_reports(tmp_path))
    verify = start_verify(verify_command(path, keys, *args, "--quiet-seconds", "60"), tmp_path)
    try:
        deadline = time.monotonic() + 120
        sessions: set[str] = set()
        while not sessions and time.monotonic() < deadline and verify.poll() is None:
            time.sleep(0.5)
            sessions = {
                c.labels[SESSION_LABEL]
                for c in docker_client.containers.list(filters=ours, ignore_removed=True)
                if f"container {c.name}" not in before
            }
        assert sessions, "verify never started a container"
        verify.send_signal(signal.SIGKILL)
        verify.wait(timeout=30)
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    (session,) = sessions
    left = docker_client.containers.list(
        filters={"label": f"{SESSION_LABEL}={session}"}, ignore_removed=True
    )
    assert left, "nothing of the killed run runs on"
    killed_run = left[0].labels[OWNER_LABEL]
    live = docker_client.containers.run(
        "n8n-restore-verify/debian-base:bookworm",
        ["sleep", "300"],
        labels=session_labels("live"),
        network_mode="none",
        detach=True,
    )
    elsewhere = docker_client.volumes.create(
        f"nrv-test-elsewhere-{secrets.token_hex(4)}",
        labels={SESSION_LABEL: "elsewhere", OWNER_LABEL: another_boots_record()},
    )
    mixed_gone = docker_client.volumes.create(
        f"nrv-test-mixed-{secrets.token_hex(4)}",
        labels={SESSION_LABEL: "mixed", OWNER_LABEL: killed_run},
    )
    mixed_live = docker_client.networks.create(
        f"nrv-test-mixed-{secrets.token_hex(4)}", internal=True, labels=session_labels("mixed")
    )
    try:
        stderr = configure_only(verify_command(path, keys, *args), tmp_path)
        said = re.search(rf"removed (\d+) Docker objects of verify session {session} ", stderr)
        assert said is not None, stderr
        assert int(said.group(1)) >= 2  # the n8n container and the session's network
        kept = [
            f"container {live.name}",
            f"volume {elsewhere.name}",
            f"volume {mixed_gone.name}",
            f"network {mixed_live.name}",
        ]
        assert left_behind(docker_client, ours, before) == sorted(kept)
        live.reload()
        assert live.status == "running"
    finally:
        live.remove(force=True)
        mixed_live.remove()
        for volume in (elsewhere, mixed_gone):
            volume.remove(force=True)


def test_failed_restore_puts_the_old_database_back(
    docker_client: DockerClient,
    n8n_image: str,
    container_snapshot: tuple[Path, Path],
    source_container: tuple[N8nTestContainer, list[str]],
    tmp_path: Path,
) -> None:
    """A snapshot whose files are intact but whose manifest promises a workflow that the
    restored n8n does not serve: the check after the restart fails, and the rollback runs."""
    path, keys = container_snapshot
    source, _ = source_container
    lying = tmp_path / path.name
    shutil.copytree(path, lying)
    manifest = Manifest.load(lying)
    promised = WorkflowEntry("nrvPromised00001", "Promised only", False, "sha256:" + "0" * 64)
    resign_manifest(lying, keys, workflows=[*manifest.workflows, promised])
    target = run_n8n_container(docker_client, n8n_image, encryption_key=source.encryption_key)
    try:
        set_up_owner(target)
        own = target.api().create_workflow(sample_workflow("Only on the target"))
        result = run_backup_cli("restore", str(lying), "--container", target.name)
        assert result.returncode == 1
        message = result.stderr.strip().splitlines()
        assert len(message) == 1, result.stderr
        assert "restore failed while checking workflows and credentials" in message[0]
        assert "the previous database was put back" in message[0]
        target.container.reload()
        assert target.container.status == "running"
        url = inspect_n8n_container(target.name).api_url
        assert url is not None
        with N8nApi(url, target.api_key) as api:
            names = [w["name"] for w in api.iter_workflows()]
        assert names == [own["name"]], "the target does not have its own data back"
    finally:
        remove(docker_client, target)


def test_restore_refuses_a_container_that_is_not_n8n_or_shares_its_data(
    docker_client: DockerClient, n8n_image: str, container_snapshot: tuple[Path, Path]
) -> None:
    """A sidecar on n8n's volume: restoring 'into' it, or into n8n while it runs beside, would
    leave a process writing to replaced files. Both are refused before anything changes."""
    path, _ = container_snapshot
    source, _ = container_snapshot_source(container_snapshot)
    target = run_n8n_container(docker_client, n8n_image, encryption_key=source)
    sidecar = docker_client.containers.run(
        "n8n-restore-verify/debian-base:bookworm",
        command=["sleep", "600"],
        name=f"sidecar-{target.name}",
        detach=True,
        volumes={target.volume: {"bind": "/home/node/.n8n", "mode": "rw"}},
        labels=TEST_LABEL,
    )
    try:
        before = database_digest(target)
        into_sidecar = run_backup_cli("restore", str(path), "--container", str(sidecar.name))
        assert into_sidecar.returncode == 2, into_sidecar.stderr
        assert f"container {sidecar.name} does not run n8n" in into_sidecar.stderr
        beside = run_backup_cli("restore", str(path), "--container", target.name)
        assert beside.returncode == 2, beside.stderr
        lines = beside.stderr.strip().splitlines()
        assert (
            len(lines) == 1 and f"{sidecar.name} also mount the data of {target.name}" in lines[0]
        )
        assert database_digest(target) == before
        target.container.reload()
        assert target.container.status == "running"
    finally:
        sidecar.remove(force=True)
        remove(docker_client, target)


def test_restore_waits_for_no_one_while_another_holds_the_lock(
    docker_client: DockerClient, n8n_image: str, container_snapshot: tuple[Path, Path]
) -> None:
    """Two restores (or a snapshot and a restore) of one data folder never run at once."""
    path, _ = container_snapshot
    source, _ = container_snapshot_source(container_snapshot)
    target = run_n8n_container(docker_client, n8n_image, encryption_key=source)
    try:
        before = database_digest(target)
        folder = inspect_n8n_container(target.name).folder.path
        with exclusive(folder, "restore"):  # another n8n-backup, as far as the CLI can tell
            result = run_backup_cli("restore", str(path), "--container", target.name)
        assert result.returncode == 2, result.stderr
        assert f"another n8n-backup is working on {folder}" in result.stderr
        assert database_digest(target) == before
    finally:
        remove(docker_client, target)


def container_snapshot_source(snapshot: tuple[Path, Path]) -> tuple[str, str]:
    """The encryption key of the container snapshot (from its key store) and its fingerprint."""
    path, keys = snapshot
    fingerprint = Manifest.load(path).key_fingerprint
    return KeyStore(keys).load(fingerprint), fingerprint


def test_a_terminated_restore_puts_the_old_data_back_and_n8n_runs(
    docker_client: DockerClient, n8n_image: str, container_snapshot: tuple[Path, Path]
) -> None:
    """A service manager's SIGTERM after the container was stopped: the restore rolls back,
    starts n8n on its own data again and exits 130 with one line saying so (SIGINT and SIGKILL
    at each step: test_restore_faults)."""
    path, _ = container_snapshot
    key, _ = container_snapshot_source(container_snapshot)
    target = run_n8n_container(docker_client, n8n_image, encryption_key=key)
    try:
        set_up_owner(target)
        own = target.api().create_workflow(sample_workflow("Only on the target"))
        restore = restore_until_the_stop(path, target)
        restore.send_signal(signal.SIGTERM)
        _, stderr = restore.communicate(timeout=300)
        assert restore.returncode == 130, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "restore interrupted while" in lines[0], stderr
        assert "the previous database was put back" in lines[0]
        target.container.reload()
        assert target.container.status == "running"
        url = inspect_n8n_container(target.name).api_url
        assert url is not None
        with N8nApi(url, target.api_key) as api:
            served = list(api.iter_workflows())
        assert [w["name"] for w in served] == [own["name"]], "the target's own data is not back"
    finally:
        remove(docker_client, target)


def test_restore_without_room_for_its_copies_is_refused_before_anything_changes(
    docker_client: DockerClient,
    n8n_image: str,
    container_snapshot: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """n8n's data on a small filesystem (a 12 MB tmpfs bind mount): the rollback copy and the
    new database cannot both fit, so the restore refuses while n8n still runs untouched."""
    path, _ = container_snapshot
    key, _ = container_snapshot_source(container_snapshot)
    small = tmp_path / "small-disk"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(small)], check=True)
    try:
        os.chown(small, 1000, 1000)
        target = run_n8n_container(docker_client, n8n_image, encryption_key=key, bind_folder=small)
        try:
            set_up_owner(target)
            before = sorted(p.name for p in small.iterdir())
            result = run_backup_cli("restore", str(path), "--container", target.name)
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "not enough free space for the restore" in lines[0]
            assert "nothing was changed" in lines[0]
            left = {p.name for p in small.iterdir()} - set(before)
            assert "restore-rollback" not in left and not any(".restoring" in n for n in left)
            target.container.reload()
            assert target.container.status == "running"
        finally:
            remove(docker_client, target)
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_restore_refuses_n8n_data_on_a_tmpfs(
    docker_client: DockerClient, n8n_image: str, container_snapshot: tuple[Path, Path]
) -> None:
    """A restore stops the container, and a tmpfs is emptied then: refused before anything."""
    path, _ = container_snapshot
    container = docker_client.containers.run(
        n8n_image,
        name=f"n8n-test-tmpfs-{secrets.token_hex(3)}",
        detach=True,
        environment=QUIET_ENV,
        tmpfs={"/home/node/.n8n": "size=64m,uid=1000,gid=1000"},
        labels=TEST_LABEL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not runs_n8n(container):
            time.sleep(0.5)
        result = run_backup_cli("restore", str(path), "--container", str(container.name))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "keeps n8n's data on a tmpfs mount" in lines[0]
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)


def restore_until_the_stop(snapshot: Path, target: N8nTestContainer) -> subprocess.Popen[str]:
    """Start ``restore`` of ``snapshot`` into ``target`` and return once it has stopped the
    container (the restore is still running then, with its output piped)."""
    restore = subprocess.Popen(
        backup_command("restore", str(snapshot), "--container", target.name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and restore.poll() is None:
        target.container.reload()
        if target.container.status != "running":  # stopped by the restore
            break
        time.sleep(0.1)
    assert restore.poll() is None, "the restore ended before the container was stopped"
    return restore


def test_a_container_on_the_hosts_network_moves_off_a_taken_port(
    n8n_image: str, docker_client: DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """n8n on the host's network (--test-credentials) whose ports another program took after
    they were chosen: its own log says so, and it starts again on new ports (the first
    container removed) instead of failing the snapshot."""
    from backup.n8n.instances import docker as docker_driver
    from backup.n8n.instances.docker import IsolatedNetwork, N8nContainer

    monkeypatch.setenv(docker_driver.RYUK_DISABLED_ENV, "true")  # as verify does offline
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    (tmp_path / ".n8n").mkdir()
    with socket.socket() as taken, socket.socket() as broker:
        for sock in (taken, broker):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        taken_ports = [taken.getsockname()[1], broker.getsockname()[1]]
        monkeypatch.setattr(docker_driver, "free_ports", lambda count: taken_ports[:count])
        network = IsolatedNetwork()
        try:
            with N8nContainer(n8n_image, tmp_path, None, network, host_network=True) as running:
                assert running.host_port not in taken_ports
                answer = httpx.get(f"{running.base_url}/rest/settings", timeout=10).json()
                assert isinstance(answer.get("data"), dict), answer
                session = {"label": f"{SESSION_LABEL}={network.session}"}
                containers = docker_client.containers.list(
                    all=True, filters=session, ignore_removed=True
                )
                assert len(containers) == 1, "the first container is still there"
        finally:
            network.close()
    assert left_behind(docker_client, ours, before) == []


def test_a_stopped_container_starts_nothing_and_ends_its_commands(
    n8n_image: str, docker_client: DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify boots in a thread: stop() (the run's end, Ctrl-C) ends a one-off n8n command
    running before the start (an upgrade's migrations: up to minutes) at once, and a start
    that comes afterwards creates no container."""
    import threading

    from backup.errors import N8nStartError
    from backup.n8n.instances import docker as docker_driver
    from backup.n8n.instances.docker import IsolatedNetwork, N8nContainer

    monkeypatch.setenv(docker_driver.RYUK_DISABLED_ENV, "true")  # as verify does offline
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    (tmp_path / ".n8n").mkdir()
    network = IsolatedNetwork()
    try:
        instance = N8nContainer(n8n_image, tmp_path, None, network)
        results: list[subprocess.CompletedProcess[str]] = []
        command = threading.Thread(
            target=lambda: results.append(instance.run_cli("list:workflow", timeout=300))
        )
        command.start()
        session = {"label": f"{SESSION_LABEL}={network.session}"}
        deadline = time.monotonic() + 60
        while not docker_client.containers.list(filters=session, ignore_removed=True):
            assert time.monotonic() < deadline, "the one-off command never ran"
            time.sleep(0.2)
        stopped = time.monotonic()
        instance.stop()
        command.join(timeout=30)
        assert not command.is_alive() and time.monotonic() - stopped < 30
        assert results[0].returncode != 0
        with pytest.raises(N8nStartError, match="stopped before it started"):
            instance.start(timeout=60)
        assert docker_client.containers.list(all=True, filters=session, ignore_removed=True) == []
    finally:
        network.close()
    assert left_behind(docker_client, ours, before) == []
