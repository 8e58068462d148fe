"""Snapshots off the host in real restic repositories (local, SFTP on a real sshd, REST on a
real rclone server): stored after the snapshot is checked, confirmed before the local copy goes,
verified straight from the repository with the result tagged there, listed and pruned there; the
keys in a second repository with a password of its own; every bad input one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from backup.keystore import KeyStore
from backup.manifest import Manifest, find_snapshots
from backup.n8n.api import N8nApi
from backup.n8n.container import inspect_n8n_container
from backup.repository import snapshots as stored
from backup.repository.restic import Password, RepoSnapshot, ResticRepository
from docker import DockerClient
from tests.cli_support import ROOT, run_backup_cli, snapshot_args
from tests.docker_support import remove, run_n8n_container
from tests.n8n_support import SourceInstance, TakenSnapshot, copy_variant, process_source_args
from tests.repository_servers import RestServer, SftpServer, require_tool
from tests.verify_runner import VERIFY_CHECKS, metric_samples, run_verify

PROCESS = ("--runtime", "process", "--quiet-seconds", "1")


def _password(folder: Path, name: str, secret: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def _repo_args(location: str, password: Path, *options: str, prefix: str = "repo") -> list[str]:
    args = [f"--{prefix}", location, f"--{prefix}-password-file", str(password)]
    for option in options:
        args += [f"--{prefix}-option", option]
    return args


def _new_repository(tmp_path: Path, secret: str) -> ResticRepository:
    """An empty local restic repository at ``tmp_path/repository``."""
    password = _password(tmp_path / "secrets", "repo-password", secret)
    repo = ResticRepository(str(tmp_path / "repository"), Password(file=password))
    repo.init()
    return repo


def _ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = run_backup_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _listed(*repo: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(_ok("list", *repo, "--json"))
    return entries


def _fetch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("n8n-verify-repo-*")}


def _snapshot_to(
    source: SourceInstance, tmp: Path, keys: Path, *repo: str
) -> subprocess.CompletedProcess[str]:
    out = tmp / f"snapshots-{time.monotonic_ns()}"
    return run_backup_cli(
        *snapshot_args(source.api_key, out, keys, *process_source_args(source)), *repo
    )


def test_snapshots_live_in_a_local_repository_verified_listed_and_pruned_there(
    source: SourceInstance, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    password = _password(tmp_path / "secrets", "repo-password", "correct horse battery")
    location = str(tmp_path / "repository")
    repo = _repo_args(location, password)
    assert "created" in _ok("repo", "init", *repo)
    keys = tmp_path / "keys"
    out = tmp_path / "snapshots"
    first = run_backup_cli(
        *snapshot_args(source.api_key, out, keys, *process_source_args(source)),
        *repo,
        "--instance",
        "prod-n8n",
    )
    assert first.returncode == 0, first.stderr
    assert find_snapshots(out) == [], "the local copy goes once the repository holds it"
    assert len(list(keys.glob("*.key"))) == 1
    (entry,) = _listed(*repo)
    assert entry["instance"] == "prod-n8n" and entry["n8n_version"] == "2.40.7"
    assert entry["last_verification"] == "never verified"

    # Verified straight from the repository: nothing left behind, the result tagged there.
    before = _fetch_folders()
    metrics = tmp_path / "n8n_backup.prom"
    run = run_verify(pytester, None, keys, *repo, *PROCESS, "--metrics-file", str(metrics))
    run.result.assert_outcomes(passed=VERIFY_CHECKS, deselected=1)
    # The metrics come from the repository (the local root is empty): alerts stay true.
    samples = metric_samples(metrics)
    instance = ("instance", "prod-n8n")
    assert samples[("n8n_backup_snapshots", frozenset({instance}))] == 1
    target = frozenset({instance, ("target_version", "2.40.7")})
    assert samples[("n8n_backup_last_verification_success", target)] == 1
    assert samples[("n8n_backup_last_verification_timestamp_seconds", target)] > time.time() - 600
    assert _fetch_folders() == before, "the fetched copy must be removed after the run"
    (entry,) = _listed(*repo)
    assert entry["verified_on"] == ["2.40.7"] and entry["last_verification"] == "PASSED"
    assert f"restic repository {location}" in run.report.read_text(encoding="utf-8")

    # A second night: deduplicated against the first, kept locally on request.
    size_one = _tree_size(Path(location))
    second = run_backup_cli(
        *snapshot_args(source.api_key, out, keys, *process_source_args(source)),
        *repo,
        "--instance",
        "prod-n8n",
        "--keep-local",
    )
    assert second.returncode == 0, second.stderr
    (local,) = find_snapshots(out)
    snapshot_size = _tree_size(local)
    growth = _tree_size(Path(location)) - size_one
    assert growth < 0.2 * snapshot_size, f"{growth} bytes added for a {snapshot_size} snapshot"
    newest = Manifest.load(local).snapshot_id

    # Prune by a policy that keeps only the newest: the newest verified one stays too.
    plan = _ok("prune", *repo, "--keep-daily", "0", "--keep-weekly", "0", "--dry-run")
    assert "would remove" not in plan and "newest verified" in plan, plan
    run_verify(pytester, None, keys, *repo, *PROCESS).result.assert_outcomes(
        passed=VERIFY_CHECKS, deselected=1
    )
    pruned = _ok("prune", *repo, "--keep-daily", "0", "--keep-weekly", "0")
    assert pruned.startswith("removed ") and "newest verified" in pruned, pruned
    (entry,) = _listed(*repo)
    assert entry["snapshot_id"] == newest and entry["last_verification"] == "PASSED"
    assert "no errors found" in _ok("repo", "check", *repo, "--read-data-subset", "100%")


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_sftp_repository_on_a_real_ssh_server(
    source: SourceInstance, sftp_server: SftpServer, tmp_path: Path
) -> None:
    password = _password(tmp_path / "secrets", "repo-password", "sftp repository secret")
    repo = _repo_args(
        sftp_server.repo_url("snapshots"), password, f"sftp.command={sftp_server.sftp_command}"
    )
    _ok("repo", "init", *repo)
    taken = _snapshot_to(source, tmp_path, tmp_path / "keys", *repo)
    assert taken.returncode == 0, taken.stderr
    (entry,) = _listed(*repo)
    assert entry["n8n_version"] == "2.40.7"
    assert "no errors found" in _ok("repo", "check", *repo, "--read-data-subset", "100%")
    # Restic's own check read back every pack over SFTP; the data is on the server's disk.
    assert any((sftp_server.root / "snapshots" / "data").rglob("*"))


def test_disaster_drill_from_rest_repositories(
    source: SourceInstance,
    rest_server: RestServer,
    taken: TakenSnapshot,
    pytester: pytest.Pytester,
    tmp_path: Path,
    docker_client: DockerClient,
    n8n_image: str,
) -> None:
    """Nothing but the two repositories' locations and passwords: keys pulled into an empty
    folder, the latest snapshot verified from the repository, then restored (README recipe)."""
    secrets_dir = tmp_path / "secrets"
    snap_password = _password(secrets_dir, "snapshots", "snapshots repository secret")
    key_password = _password(secrets_dir, "keys", "a different secret for the keys")
    snap_repo = _repo_args(rest_server.repo_url("drill-snapshots"), snap_password)
    key_repo = _repo_args(rest_server.repo_url("drill-keys"), key_password, prefix="key-repo")
    _ok("repo", "init", *snap_repo)
    _ok("repo", "init", "--repo", key_repo[1], "--repo-password-file", str(key_password))
    # The nightly side: the snapshot to one repository, the key store to the other.
    stored = _snapshot_to(source, tmp_path, taken.key_store, *snap_repo)
    assert stored.returncode == 0, stored.stderr
    same_secret = run_backup_cli(
        "keys",
        "push",
        "--key-store",
        str(taken.key_store),
        "--key-repo",
        key_repo[1],
        "--key-repo-password-file",
        str(snap_password),
        env={**os.environ, "RESTIC_PASSWORD_FILE": str(snap_password)},
    )
    _one_line_error(same_secret, "its own")
    assert "pushed" in _ok("keys", "push", "--key-store", str(taken.key_store), *key_repo)
    copy = tmp_path / "key-copy"  # or a plain folder, say on another disk
    _ok("keys", "push", "--key-store", str(taken.key_store), "--key-folder", str(copy))
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        p.name for p in taken.key_store.glob("*.key")
    )
    assert copy.stat().st_mode & 0o077 == 0

    # The drill, on an empty folder.
    drill = tmp_path / "drill"
    drill.mkdir()
    pulled = _ok("keys", "pull", "--key-store", str(drill / "keys"), *key_repo)
    assert pulled.startswith(f"{len(list(taken.key_store.glob('*.key')))} keys added")
    assert KeyStore(drill / "keys").root.stat().st_mode & 0o077 == 0
    run = run_verify(pytester, None, None, *snap_repo, *key_repo, *PROCESS)
    run.result.assert_outcomes(passed=VERIFY_CHECKS, deselected=1)
    (entry,) = _listed(*snap_repo)
    assert entry["verified_on"] == ["2.40.7"]
    # Then restored into a fresh n8n started with the pulled key.
    (key_file,) = (drill / "keys").glob("*.key")
    fresh = run_n8n_container(docker_client, n8n_image, encryption_key=key_file.read_text().strip())
    try:
        restored = _ok("restore", *snap_repo, "--container", fresh.name)
        loaded = re.search(r": (\d+) workflows load, (\d+) credentials decrypt", restored)
        assert loaded and int(loaded.group(1)) > 250 and int(loaded.group(2)) > 0, restored
        with N8nApi(inspect_n8n_container(fresh.name).api_url or "", source.api_key) as api:
            assert sum(1 for _ in api.iter_workflows()) == int(loaded.group(1))
    finally:
        remove(docker_client, fresh)
    assert not list(Path(tempfile.gettempdir()).glob("n8n-backup-fetch-*")), "fetched copy left"

    # Fails clearly: a missing key repository, a damaged pack in the snapshot repository.
    missing = run_verify_usage(
        pytester, *snap_repo, "--key-repo", rest_server.repo_url("nowhere"), *key_repo[2:]
    )
    assert "is not a restic repository" in missing and "nowhere" in missing
    packs = sorted((rest_server.data_dir / "drill-snapshots" / "data").rglob("*"))
    pack = max((p for p in packs if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(raw))
    # The manifest still comes out; the snapshot's files do not: it fails, nothing boots.
    damaged = run_verify(pytester, None, None, *snap_repo, *key_repo, *PROCESS)
    damaged.result.assert_outcomes(errors=VERIFY_CHECKS, deselected=1)
    first = next(iter(damaged.failures.values()))
    assert "the snapshot's files could not be fetched: restic restore failed" in first, first
    (entry,) = json.loads(damaged.report.with_suffix(".json").read_text())["entries"]
    assert entry["result"] == "PARTIAL" and entry["durations"]["boot"] is None, entry
    (listed,) = _listed(*snap_repo)
    assert listed["verified_on"] == ["2.40.7"], "not verified is not failed: the tag stays"
    check = run_backup_cli("repo", "check", *snap_repo, "--read-data-subset", "100%")
    _one_line_error(check, "restic check failed")


def run_verify_usage(pytester: pytest.Pytester, *args: str) -> str:
    """A verify run that must stop before any test with one line: that line."""
    result = pytester.runpytest_subprocess(str(ROOT / "verify"), *args, *PROCESS, timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines[-20:]
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in result.errlines)
    return errors[0]


def test_bad_repositories_are_one_line_and_change_nothing(
    source: SourceInstance, tmp_path: Path
) -> None:
    password = _password(tmp_path / "secrets", "right", "the right one")
    wrong = _password(tmp_path / "secrets", "wrong", "not the right one")
    location = str(tmp_path / "repository")
    _ok("repo", "init", *_repo_args(location, password))
    keys = tmp_path / "keys"

    def refused(*repo: str) -> str:
        out = tmp_path / f"out-{time.monotonic_ns()}"
        result = run_backup_cli(
            *snapshot_args(source.api_key, out, keys, *process_source_args(source)), *repo
        )
        assert not out.exists() or find_snapshots(out) == [], "nothing may be left half-done"
        return _one_line_error(result)

    assert "wrong password" in refused(*_repo_args(location, wrong))
    not_restic = tmp_path / "just-a-folder"
    not_restic.mkdir()
    assert "is not a restic repository" in refused(*_repo_args(str(not_restic), password))
    closed = f"rest:http://n8n:hunter2@127.0.0.1:{_closed_port()}/"
    unreachable = refused(*_repo_args(closed, password))
    assert "unreachable" in unreachable and "hunter2" not in unreachable, unreachable
    assert "no password" in _one_line_error(
        run_backup_cli("list", "--repo", location, env=_without_restic_password())
    )
    no_restic = run_backup_cli(
        "list", *_repo_args(location, password), env={**os.environ, "PATH": str(tmp_path)}
    )
    _one_line_error(no_restic, "restic is not installed", "apt install restic")

    # The password changes between the check and the upload: the snapshot stays here.
    flip = tmp_path / "secrets" / "flip.sh"
    count = tmp_path / "secrets" / "calls"
    flip.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -le 1 ]; then cat "{password}"; else cat "{wrong}"; fi\n'
    )
    flip.chmod(0o700)
    out = tmp_path / "kept"
    result = run_backup_cli(
        *snapshot_args(source.api_key, out, keys, *process_source_args(source)),
        "--repo",
        location,
        "--repo-password-command",
        str(flip),
    )
    (kept,) = find_snapshots(out)
    _one_line_error(result, "wrong password", f"the snapshot stays in {kept}")
    assert Manifest.load(kept).counts.workflows > 250, "the local snapshot must survive"

    # A stale lock left by a run that died on another machine (restic cannot tell that it
    # died): said with how to remove it, never removed silently.
    require_tool("restic")
    env = {**_without_restic_password(), "RESTIC_PASSWORD_FILE": str(password)}
    elsewhere = (
        f"hostname n8n-old-host && exec restic -r {location} backup --stdin --stdin-filename x"
    )
    holder = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", elsewhere],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _wait_for_a_written_lock(location, env)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    locks = list((Path(location) / "locks").iterdir())
    assert locks, "restic took no lock"
    locked = run_backup_cli("repo", "check", *_repo_args(location, password))
    _one_line_error(locked, "is locked by", "n8n-old-host", "restic -r REPOSITORY unlock")
    assert list((Path(location) / "locks").iterdir()) == locks


def _wait_for_a_written_lock(location: str, env: dict[str, str]) -> None:
    """Wait until a lock file in the repository is whole: restic ignores a lock file it cannot
    read, so killing its writer halfway would leave no lock to find."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for lock in (Path(location) / "locks").iterdir():
            shown = subprocess.run(
                ["restic", "-r", location, "--no-lock", "cat", "lock", lock.name],
                capture_output=True,
                text=True,
                env=env,
            )
            if shown.returncode == 0 and "n8n-old-host" in shown.stdout:
                return
        time.sleep(0.1)
    raise AssertionError("restic wrote no whole lock within 30 s")


def _closed_port() -> int:
    from backup.n8n.instances.ports import free_port

    return free_port()


def _without_restic_password() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}


def test_the_nightly_routine_with_a_repository(source: SourceInstance, tmp_path: Path) -> None:
    """examples/nightly.sh with N8N_BACKUP_REPO: stored, verified from the repository, pruned
    there; silent when all is well."""
    password = _password(tmp_path / "secrets", "repo-password", "nightly repository secret")
    location = str(tmp_path / "repository")
    _ok("repo", "init", *_repo_args(location, password))
    key_file = _password(tmp_path / "secrets", "api-key", source.api_key)
    env = {
        **_without_restic_password(),
        "N8N_FOLDER": str(source.n8n_folder),
        "N8N_API_URL": source.process.base_url,
        "N8N_API_KEY_FILE": str(key_file),
        "BACKUP_ROOT": str(tmp_path / "snapshots"),
        "KEY_STORE": str(tmp_path / "keys"),
        "VERIFY_ARGS": " ".join(PROCESS),
        "N8N_BACKUP_REPO": location,
        "RESTIC_PASSWORD_FILE": str(password),
    }
    night = subprocess.run(
        [str(ROOT / "examples" / "nightly.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert night.returncode == 0, night.stdout + night.stderr
    assert night.stdout == "" and night.stderr == "", "cron would mail a successful night"
    assert find_snapshots(tmp_path / "snapshots") == [], "the local copy went to the repository"
    (entry,) = _listed(*_repo_args(location, password))
    assert entry["last_verification"] == "PASSED" and entry["verified_on"] == ["2.40.7"]


def test_only_files_and_folders_come_out_of_a_repository(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """A repository is untrusted: a stored FIFO (or device, or link) is never fetched."""
    from backup.errors import RepositoryError

    repo = _new_repository(tmp_path, "fifo repository secret")
    copy = copy_variant(taken, tmp_path / "copies", "with-a-fifo")
    os.mkfifo(copy / "pipe")
    (copy / "link").symlink_to("/etc/passwd")
    item = stored.store(repo, copy, lambda message: None)
    fetched = tmp_path / "fetched"
    with pytest.raises(RepositoryError, match="pipe, which is neither a file nor a folder"):
        stored.fetch(repo, item.stored, fetched)
    assert [p.name for p in fetched.iterdir()] == [], "nothing of it may stay"


_PROBE = """
import json, os
from pathlib import Path

def _whole(config):
    folder = Path(config.getoption("snapshots"))
    held = [p for p in folder.iterdir() if p.is_dir()]
    return sorted(p.name for p in held if {c.name for c in p.iterdir()} != {"manifest.json"})

def _log(entry):
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")

def pytest_collection_finish(session):
    _log({"at": "collected", "whole": _whole(session.config)})

def pytest_runtest_call(item):
    _log({"at": item.nodeid, "whole": _whole(item.config)})
"""


def _probed(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_verify_from_a_repository_holds_one_snapshot_per_worker_on_disk(
    source: SourceInstance,
    pytester: pytest.Pytester,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--repo-snapshots all: only the manifests come before the run; each snapshot's files come
    when its group starts and go when it ends, so that a nightly verify of every kept snapshot
    needs the disk of one snapshot per worker, not of all of them. Serially and with two
    workers, every snapshot passes and nothing stays behind."""
    repo = _new_repository(tmp_path, "one at a time secret")
    location, password = repo.location, tmp_path / "secrets" / "repo-password"
    keys = tmp_path / "keys"
    for _ in range(3):  # three nights
        night = _snapshot_to(source, tmp_path, keys, *_repo_args(location, password))
        assert night.returncode == 0, night.stderr
    names = [item.folder_name for item in stored.stored_snapshots(repo)]
    assert len(set(names)) == 3
    pytester.makepyfile(probe=_PROBE)
    before = _fetch_folders()
    common = (*_repo_args(location, password), "--repo-snapshots", "all", "-p", "probe")

    serial_log = tmp_path / "serial.log"
    monkeypatch.setenv("PROBE_LOG", str(serial_log))
    serial = run_verify(pytester, None, keys, *common, *PROCESS)
    serial.result.assert_outcomes(passed=3 * VERIFY_CHECKS, deselected=3)
    seen = _probed(serial_log)
    assert seen[0] == {"at": "collected", "whole": []}, "only the manifests before the run"
    for entry in seen[1:]:
        (held,) = entry["whole"]  # type: ignore[misc]
        assert f"[{held}]" in str(entry["at"]), entry
    assert {tuple(entry["whole"]) for entry in seen[1:]} == {(name,) for name in names}  # type: ignore[arg-type]

    parallel_log = tmp_path / "parallel.log"
    monkeypatch.setenv("PROBE_LOG", str(parallel_log))
    parallel = run_verify(pytester, None, keys, *common, *PROCESS, "-n", "2")
    parallel.result.assert_outcomes(passed=3 * VERIFY_CHECKS)  # workers deselect on their own
    calls = [entry for entry in _probed(parallel_log) if entry["at"] != "collected"]
    assert len(calls) == 3 * VERIFY_CHECKS
    for entry in calls:
        held = entry["whole"]
        assert isinstance(held, list) and 1 <= len(held) <= 2, entry
        assert any(f"[{name}]" in str(entry["at"]) for name in held), entry
    assert _fetch_folders() == before, "the fetched copies must be removed after the run"
    verified = {str(item.folder_name): item.verified for item in stored.stored_snapshots(repo)}
    assert verified == {name: ["2.40.7"] for name in names}


def test_a_snapshot_whose_files_cannot_be_fetched_fails_in_one_line_and_boots_nothing(
    taken: TakenSnapshot, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The repository goes away after the manifests were read (a remote lost mid-run): the
    group's first check says why in one line, no n8n is started, and the snapshot counts as
    not verified (PARTIAL: the run does not pass), not as broken."""
    repo = _new_repository(tmp_path, "going away secret")
    location, password = Path(repo.location), tmp_path / "secrets" / "repo-password"
    stored.store(repo, copy_variant(taken, tmp_path / "copies", "gone"), lambda message: None)
    pytester.makepyfile(
        breaker=f"""
        import pytest, shutil
        @pytest.hookimpl(trylast=True)
        def pytest_configure(config):
            shutil.rmtree({str(location)!r})
        """
    )
    run = run_verify(
        pytester, None, taken.key_store, *_repo_args(str(location), password), "-p", "breaker",
        *PROCESS,
    )  # fmt: skip
    run.result.assert_outcomes(errors=VERIFY_CHECKS, deselected=1)
    assert len(run.failures) == VERIFY_CHECKS, run.failures
    first = run.failures["test_manifest_authentic[gone]"]
    assert "the snapshot's files could not be fetched: " in first, first
    assert "is not a restic repository" in first, first
    for message in run.failures.values():
        assert "\n" not in message.strip() and "Traceback" not in message, message
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    result = json.loads(run.report.with_suffix(".json").read_text())
    assert result["verdict"] == "PARTIAL", result
    (entry,) = result["entries"]
    assert entry["result"] == "PARTIAL", entry
    assert entry["durations"]["boot"] is None, "nothing may boot without the snapshot's files"
    assert "could not be fetched" in entry["causes"][0], entry["causes"]


def test_a_snapshot_kept_for_the_next_group_is_not_fetched_again(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """The same snapshot on the next target version: its files stay between the two groups and
    are not fetched again (the repository may be gone by then); after the last group only the
    manifest is left, and a fetch that fails raises the repository's error."""
    import shutil

    from backup.errors import RepositoryError
    from verify.remote import SnapshotFiles

    repo, folder, source = _stored_with_manifest_only(taken, tmp_path, "kept")
    whole = sorted(p.relative_to(taken.path) for p in taken.path.rglob("*"))
    files = SnapshotFiles(repo, tmp_path / "run", {folder: source})

    def contents() -> list[Path]:
        return sorted(p.relative_to(folder) for p in folder.rglob("*"))

    assert contents() == [Path("manifest.json")]
    with files.held(folder, lambda: True):
        assert contents() == whole
    assert contents() == whole, "kept for the next group"
    shutil.rmtree(repo.location)  # the repository goes away
    with files.held(folder, lambda: False):
        assert contents() == whole
    assert contents() == [Path("manifest.json")]
    with pytest.raises(RepositoryError), files.held(folder, lambda: False):
        pass
    assert contents() == [Path("manifest.json")]


def _stored_with_manifest_only(
    taken: TakenSnapshot, tmp_path: Path, name: str
) -> tuple[ResticRepository, Path, RepoSnapshot]:
    """A repository holding a copy of the shared snapshot, and that snapshot's folder fetched
    with its manifest alone, as verify --repo fetches it before the run."""
    repo = _new_repository(tmp_path, f"{name} secret")
    item = stored.store(repo, copy_variant(taken, tmp_path / "copies", name), lambda m: None)
    folder = stored.fetch(repo, item.stored, tmp_path / "run" / "snapshots", manifest_only=True)
    return repo, folder, item.stored


def test_a_snapshot_tagged_meanwhile_is_found_again_by_its_folder(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """Another shard of the same run tags the snapshot when it is done with it (restic then
    gives it a new id); a later group of this machine still gets its files."""
    from verify.remote import SnapshotFiles

    repo, folder, before = _stored_with_manifest_only(taken, tmp_path, "retagged")
    repo.retag(before.id, ["verified:2.40.7"])
    assert before.id not in {snapshot.id for snapshot in repo.snapshots()}
    files = SnapshotFiles(repo, tmp_path / "run", {folder: before})
    with files.held(folder, lambda: False):
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            p.name for p in taken.path.iterdir()
        )
    assert [p.name for p in folder.iterdir()] == ["manifest.json"]


def test_a_repository_locked_for_a_moment_is_waited_for(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """restic's exclusive lock (a tag, a forget, a prune elsewhere; here a check killed while
    it held it) makes a fetch wait and try again rather than fail the snapshot."""
    import threading

    from verify.remote import SnapshotFiles

    repo, folder, source = _stored_with_manifest_only(taken, tmp_path, "locked")
    password = tmp_path / "secrets" / "repo-password"
    env = {**os.environ, "RESTIC_REPOSITORY": repo.location, "RESTIC_PASSWORD_FILE": str(password)}
    checking = subprocess.Popen(
        ["restic", "check", "--read-data"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    locks = Path(repo.location) / "locks"
    deadline = time.monotonic() + 30
    while not any(locks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    checking.send_signal(signal.SIGKILL)  # its exclusive lock stays behind
    checking.wait()
    assert any(locks.iterdir()), "restic check took no lock"
    unlocked = threading.Timer(3.0, lambda: subprocess.run(
        ["restic", "unlock", "--remove-all"], env=env, capture_output=True, check=True
    ))  # fmt: skip
    unlocked.start()
    started = time.monotonic()
    files = SnapshotFiles(repo, tmp_path / "run", {folder: source})
    with files.held(folder, lambda: False):
        assert (folder / "database.sqlite").is_file()
    unlocked.join()
    assert time.monotonic() - started >= 3.0, "the fetch did not wait for the lock"
