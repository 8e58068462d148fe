"""`restore --container` under injected faults, on a real n8n container with a real volume
(SQLite) and on a real PostgreSQL server (database swap by rename).

The restore is paused at a named point (backup.restore.fault_points) and then killed (SIGKILL),
interrupted (SIGINT) or has its container stopped from outside. After each case n8n runs on
its complete previous data (every workflow and credential that existed before, credentials
decrypting in n8n), nothing is pending, and the tool's last line says so; a killed restore is
finished by `restore --resume`, and a plain re-run is refused until then. A restore killed
before its journal's first step (the snapshot staged, n8n untouched) needs no resume: the next
restore removes what it staged.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from docker.client import DockerClient

from backup.digests import key_fingerprint
from backup.manifest import Manifest
from backup.n8n.api import N8nApi
from backup.n8n.container import ContainerCli, inspect_n8n_container
from backup.n8n.postgres import PostgresTarget, n8n_database_env
from backup.restore.checks import n8n_credential_digests, served_workflow_digests
from backup.restore.database_slot import ROLLBACK_DIR, replace_database
from backup.restore.fault_points import STAGED, STARTED, STOPPED, SWAPPED, SWAPPING
from backup.restore.journal import clear_journal, read_journal
from backup.restore.postgres_slot import database_names, rollback_databases
from backup.secret import Secret
from tests.cli_support import run_backup_cli, run_snapshot_cli, start_paused_backup_cli
from tests.docker_support import (
    N8nTestContainer,
    remove,
    run_n8n_container,
    set_up_owner,
    wait_ready,
)
from tests.n8n_support import seed
from tests.postgres_support import PostgresServer
from verify.bootstrap import sample_credentials, sample_workflow


@dataclass
class FaultTarget:
    """An n8n container, a snapshot of it, and how the CLI reaches its database."""

    handle: N8nTestContainer
    snapshot: Path
    cli_args: tuple[str, ...] = ()  # --postgres DSN (and --api-url on the host network)
    resume_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    postgres: PostgresTarget | None = None

    @property
    def url(self) -> str:
        """n8n's address now (a published port changes when the container restarts)."""
        if self.postgres is not None:
            return self.handle.url
        url = inspect_n8n_container(self.handle.name).api_url
        assert url is not None
        return url


@dataclass(frozen=True)
class State:
    """What n8n serves: workflow digests by id, credential digests by id; and the files of
    its custom nodes folder (a restore swaps it beside the database)."""

    workflows: dict[str, str]
    credentials: dict[str, str] = field(repr=False)
    custom: list[str] = field(default_factory=list)


def current_state(target: FaultTarget) -> State:
    target.handle.container.reload()
    assert target.handle.container.status == "running", "n8n was left stopped"
    workflows = served_workflow_digests(target.url, target.handle.api_key, [])
    key = target.handle.encryption_key
    credentials = n8n_credential_digests(
        ContainerCli(target.handle.container), Secret(key), key_fingerprint(key)
    )
    custom = inspect_n8n_container(target.handle.name).folder.path / "custom"
    files = sorted(str(p.relative_to(custom)) for p in custom.rglob("*")) if custom.is_dir() else []
    return State(workflows, credentials, files)


def add_own_data(target: FaultTarget) -> State:
    """A workflow and a credential the snapshot does not have; the state with them."""
    api = N8nApi(target.url, target.handle.api_key)
    marker = secrets.token_hex(4)
    api.create_workflow(sample_workflow(f"Only on the target {marker}"))
    name, type_, data = sample_credentials(marker)[0]
    api.create_credential(f"{name} {marker}", type_, data)
    api.close()
    custom = inspect_n8n_container(target.handle.name).folder.path / "custom"
    custom.mkdir(exist_ok=True)
    (custom / f"own-{marker}.js").write_text("// the target's own custom node")
    state = current_state(target)
    snapshot_ids = {w.id for w in Manifest.load(target.snapshot).workflows}
    assert set(state.workflows) - snapshot_ids, "the target must differ from the snapshot"
    return state


def restore_args(target: FaultTarget) -> list[str]:
    """``n8n-backup restore`` of the target's snapshot into its container (and database)."""
    return ["restore", str(target.snapshot), "--container", target.handle.name, *target.cli_args]


def start_paused_restore(
    target: FaultTarget, point: str, seconds: int = 120
) -> subprocess.Popen[str]:
    """Start a restore that pauses at ``point``; return once it has reached it."""
    return start_paused_backup_cli(restore_args(target), point, target.env, seconds)


def assert_previous_data_runs(target: FaultTarget, before: State) -> None:
    after = current_state(target)
    assert after.workflows == before.workflows, "workflows differ from before the restore"
    assert after.credentials == before.credentials, "credentials differ or do not decrypt"
    assert after.custom == before.custom, "custom/ is not the target's own again"
    folder = inspect_n8n_container(target.handle.name).folder.path
    assert read_journal(folder / ROLLBACK_DIR) is None, "a restore is still pending"


def kill_and_resume(target: FaultTarget, point: str) -> None:
    restore = start_paused_restore(target, point)
    restore.kill()
    restore.communicate()
    env = {**os.environ, **target.env}
    again = run_backup_cli(*restore_args(target), env=env)
    assert again.returncode == 2, again.stderr
    assert "restore --resume --container" in again.stderr.strip().splitlines()[-1]
    resumed = run_backup_cli(
        "restore",
        "--resume",
        "--container",
        target.handle.name,
        *target.resume_args,
        env=env,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr
    last = resumed.stdout.strip().splitlines()[-1]
    assert "resumed the interrupted restore" in last, last
    assert f"{target.handle.name} is running on its previous data" in last


def interrupt(target: FaultTarget, point: str) -> None:
    restore = start_paused_restore(target, point)
    restore.send_signal(signal.SIGINT)
    _, stderr = restore.communicate(timeout=400)
    assert restore.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("n8n-backup: error: restore interrupted while"), last
    assert f"the previous database was put back and {target.handle.name} is running" in last


@pytest.fixture(scope="module")
def sqlite_target(
    docker_client: DockerClient, n8n_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultTarget]:
    """n8n on SQLite in a container with the real-world corpus, and a snapshot of it."""
    handle = run_n8n_container(docker_client, n8n_image, secrets.token_hex(24))
    try:
        set_up_owner(handle)
        seed(handle.api(), corpus=True, generated=0)
        base = tmp_path_factory.mktemp("fault-sqlite")
        path = run_snapshot_cli(
            handle.api_key, base / "snapshots", base / "keys", "--container", handle.name
        )
        yield FaultTarget(handle, path)
    finally:
        remove(docker_client, handle)


@pytest.mark.parametrize("point", [STOPPED, SWAPPING, SWAPPED, STARTED])
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGINT"])
def test_sqlite_restore_faults_leave_the_previous_data_running(
    sqlite_target: FaultTarget, fault: str, point: str
) -> None:
    before = add_own_data(sqlite_target)
    if fault == "SIGKILL":
        kill_and_resume(sqlite_target, point)
    else:
        interrupt(sqlite_target, point)
    assert_previous_data_runs(sqlite_target, before)


def test_resume_refuses_when_n8n_was_started_since(sqlite_target: FaultTarget) -> None:
    """Killed after the swap; then someone starts n8n on the restored data (and may use it):
    --resume must not overwrite that with the previous database. The operator settles it by
    hand (here: puts the previous database back and clears the journal)."""
    before = add_own_data(sqlite_target)
    restore = start_paused_restore(sqlite_target, SWAPPED)
    restore.kill()
    restore.communicate()
    sqlite_target.handle.container.start()
    resumed = run_backup_cli(
        "restore", "--resume", "--container", sqlite_target.handle.name, timeout=400
    )
    assert resumed.returncode != 0
    last = resumed.stderr.strip().splitlines()[-1]
    assert "was started again after the interrupted restore" in last, last
    folder = inspect_n8n_container(sqlite_target.handle.name).folder
    journal = read_journal(folder.path / ROLLBACK_DIR)
    assert journal is not None and Path(journal.rollback).is_file(), "the previous data is kept"
    sqlite_target.handle.container.stop(timeout=30)
    replace_database(folder, Path(journal.rollback))
    clear_journal(folder.path / ROLLBACK_DIR)
    sqlite_target.handle.container.start()
    wait_ready(
        N8nTestContainer(
            sqlite_target.handle.container,
            sqlite_target.handle.volume,
            sqlite_target.url,
            sqlite_target.handle.encryption_key,
        )
    )
    assert_previous_data_runs(sqlite_target, before)


def test_docker_stop_during_the_readiness_wait_is_rolled_back(sqlite_target: FaultTarget) -> None:
    """Someone stops the container while n8n boots on the snapshot: the restore must not claim
    success; it puts the previous database back and n8n runs on it."""
    before = add_own_data(sqlite_target)
    restore = start_paused_restore(sqlite_target, STARTED, seconds=5)
    sqlite_target.handle.container.stop(timeout=30)
    _, stderr = restore.communicate(timeout=400)
    assert restore.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert "was stopped from outside during the restore" in last, last
    assert "the previous database was put back" in last and "is running on it again" in last
    assert_previous_data_runs(sqlite_target, before)


def test_a_stopped_container_is_restored_and_left_running(sqlite_target: FaultTarget) -> None:
    """No --api-url for a stopped container with an ephemeral port: the restore starts it, reads
    the port it got, checks it serves exactly the snapshot, and lists the rollback copies."""
    add_own_data(sqlite_target)
    sqlite_target.handle.container.stop(timeout=30)
    result = run_backup_cli(*restore_args(sqlite_target))
    assert result.returncode == 0, result.stderr
    manifest = Manifest.load(sqlite_target.snapshot)
    assert f"{manifest.counts.workflows} workflows load" in result.stdout.strip().splitlines()[-1]
    state = current_state(sqlite_target)
    assert set(state.workflows) == {w.id for w in manifest.workflows}
    folder = inspect_n8n_container(sqlite_target.handle.name).folder.path
    copies = sorted((folder / ROLLBACK_DIR).iterdir())
    owner = folder.stat()
    for path in [folder / ROLLBACK_DIR, *copies, *(p for c in copies for p in c.iterdir())]:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (owner.st_uid, owner.st_gid), path
    listed = run_backup_cli("list", "--container", sqlite_target.handle.name)
    assert listed.returncode == 0, listed.stderr
    assert str(copies[-1] / "database.sqlite") in listed.stdout
    assert len([c for c in copies if c.is_dir()]) <= 3, "rollback copies are not bounded"


@pytest.fixture(scope="module")
def postgres_target(
    docker_client: DockerClient, n8n_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultTarget]:
    """n8n in a container on a real PostgreSQL server (host network), with the corpus, and a
    snapshot of it; the password only ever in PGPASSWORD."""
    server = PostgresServer().start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE n8n_faults")
        database = PostgresTarget.from_dsn(server.dsn("n8n_faults"), "public", "")
        handle = run_n8n_container(
            docker_client,
            n8n_image,
            secrets.token_hex(24),
            extra_env=n8n_database_env(database),
            host_network=True,
        )
        try:
            set_up_owner(handle)
            seed(handle.api(), corpus=True, generated=0)
            dsn = f"postgresql://postgres@127.0.0.1:{server.port}/n8n_faults"
            args = ("--postgres", dsn, "--api-url", handle.url)
            base = tmp_path_factory.mktemp("fault-postgres")
            env = {"PGPASSWORD": server.password}
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PGPASSWORD", server.password)
                path = run_snapshot_cli(
                    handle.api_key,
                    base / "snapshots",
                    base / "keys",
                    "--container",
                    handle.name,
                    *args,
                )
            yield FaultTarget(handle, path, args, args, env, database)
        finally:
            remove(docker_client, handle)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fault", "point"),
    [("SIGKILL", SWAPPING), ("SIGKILL", SWAPPED), ("SIGKILL", STARTED), ("SIGINT", SWAPPING)],
)
def test_postgres_restore_faults_leave_the_previous_database_running(
    postgres_target: FaultTarget, fault: str, point: str
) -> None:
    """SWAPPING is between the two renames, inside their transaction: a kill there must leave
    both names as they were."""
    before = add_own_data(postgres_target)
    if fault == "SIGKILL":
        kill_and_resume(postgres_target, point)
    else:
        interrupt(postgres_target, point)
    assert_previous_data_runs(postgres_target, before)
    assert postgres_target.postgres is not None
    assert not _staging_databases(postgres_target), "a staging database was left behind"
    assert len(rollback_databases(postgres_target.postgres)) <= 3


def _staging_databases(target: FaultTarget) -> list[str]:
    assert target.postgres is not None
    return [name for name in database_names(target.postgres) if "_restoring_" in name]


def test_postgres_restore_interrupted_while_staging_drops_its_staging(
    postgres_target: FaultTarget,
) -> None:
    """Ctrl-C after pg_restore filled the staging database: nothing of n8n's was touched, the
    staging database is dropped, and the last line says nothing was changed."""
    before = add_own_data(postgres_target)
    restore = start_paused_restore(postgres_target, STAGED)
    assert len(_staging_databases(postgres_target)) == 1, "paused with the staging database"
    restore.send_signal(signal.SIGINT)
    _, stderr = restore.communicate(timeout=400)
    assert restore.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.endswith("was touched; nothing was changed"), last
    assert not _staging_databases(postgres_target), "the staging database was left behind"
    assert_previous_data_runs(postgres_target, before)


def test_postgres_restore_killed_while_staging_is_cleared_by_the_next(
    postgres_target: FaultTarget,
) -> None:
    """SIGKILL after pg_restore filled the staging database, before the journal's first step:
    n8n still runs on its data and nothing is pending, but the staging database (as big as
    the restored data) stays on the server. The next restore drops it first and says so."""
    before = add_own_data(postgres_target)
    restore = start_paused_restore(postgres_target, STAGED)
    restore.kill()
    restore.communicate()
    (left,) = _staging_databases(postgres_target)
    assert current_state(postgres_target) == before, "n8n's data was touched"
    folder = inspect_n8n_container(postgres_target.handle.name).folder.path
    assert read_journal(folder / ROLLBACK_DIR) is None, "nothing was pending yet"
    again = run_backup_cli(
        *restore_args(postgres_target), env={**os.environ, **postgres_target.env}, timeout=400
    )
    assert again.returncode == 0, again.stderr
    said = f"restore: removed staging database {left}, left by an interrupted restore"
    assert said in again.stdout.splitlines()
    assert not _staging_databases(postgres_target)
    served = current_state(postgres_target).workflows
    assert served.keys() == {w.id for w in Manifest.load(postgres_target.snapshot).workflows}


def test_postgres_rollback_databases_are_listed_and_bounded(postgres_target: FaultTarget) -> None:
    """Four successful restores: only the three newest rollback databases stay, and `list
    --container --postgres` names them."""
    assert postgres_target.postgres is not None
    env = {**os.environ, **postgres_target.env}
    for _ in range(4):
        add_own_data(postgres_target)
        result = run_backup_cli(*restore_args(postgres_target), env=env)
        assert result.returncode == 0, result.stderr
    kept = rollback_databases(postgres_target.postgres)
    assert len(kept) == 3, kept
    listed = run_backup_cli(
        "list",
        "--container",
        postgres_target.handle.name,
        *postgres_target.cli_args[:2],
        "--json",
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["rollbacks"]
    assert [row["location"].split()[1] for row in rows] == kept
    assert postgres_target.env["PGPASSWORD"] not in listed.stdout
