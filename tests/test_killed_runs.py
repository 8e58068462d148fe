"""A verify run killed outright (SIGKILL: the OOM killer, a CI runner's last resort) cannot
clean up after itself: its n8n stops with it all the same (the kernel's parent-death signal),
and the next run removes the restored copy it left, with the data and the key in it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from backup.abandoned import (
    FETCH_PREFIX,
    KEYS_FETCH_PREFIX,
    LOG_PREFIX,
    OWNER_NAME,
    RESTORE_FETCH_PREFIX,
    RESTORE_PREFIX,
    claim,
    owner_gone,
    owner_record,
    remove_abandoned,
)
from backup.processes import started as started_or_none
from tests.cli_support import ROOT, run_backup_cli
from tests.n8n_support import (
    TakenSnapshot,
    copy_variant,
    instances_of,
    restored_folders,
    wait_for_restored_instances,
    wait_until_restored_instances_stop,
)
from tests.verify_runner import configure_only, private_reports, start_verify, verify_command

PROCESS = ("--runtime", "process", "-p", "no:cacheprovider")


def started(pid: int) -> int:
    when = started_or_none(pid)
    assert when is not None, f"process {pid} is gone"
    return when


def _pid_namespace() -> str:
    return os.readlink("/proc/self/ns/pid")


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _record(pid: object, when: object, **other: object) -> str:
    """An owner record as this machine, boot and pid namespace make them, with ``other``."""
    owner = {
        "pid": pid,
        "started": when,
        "boot": _boot(),
        "machine": Path("/etc/machine-id").read_text().strip(),
        "pid_namespace": _pid_namespace(),
    }
    return json.dumps({**owner, **other})


def _owned_by(folder: Path, pid: int, when: object, **other: object) -> Path:
    folder.mkdir(mode=0o700)
    (folder / OWNER_NAME).write_text(_record(pid, when, **other))
    return folder


def _verify_one(taken: TakenSnapshot, tmp_path: Path, *extra: str) -> list[str]:
    """verify of a copy of the taken snapshot, on the process runtime, reports in
    ``tmp_path``."""
    root = tmp_path / "snapshots"
    if not root.exists():
        copy_variant(taken, root, "one")
    return verify_command(root, taken.key_store, *PROCESS, *private_reports(tmp_path), *extra)


def _log_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{LOG_PREFIX}*")}


def test_only_folders_whose_run_is_gone_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    finished_started = started(finished.pid)
    finished.wait()
    me = os.getpid()
    gone = _owned_by(tmp_path / f"{RESTORE_PREFIX}gone", finished.pid, finished_started)
    # Unpacked read-only from a hostile snapshot's archive: removed all the same.
    stubborn = _owned_by(tmp_path / f"{LOG_PREFIX}stubborn", finished.pid, finished_started)
    (stubborn / "ro" / "deep").mkdir(parents=True)
    (stubborn / "ro" / "deep" / "file").write_text("x")
    (stubborn / "ro" / "deep").chmod(0o555)
    (stubborn / "ro").chmod(0o555)
    reused = _owned_by(tmp_path / f"{FETCH_PREFIX}reused", me, started(me) - 1)
    rebooted = _owned_by(tmp_path / f"{RESTORE_PREFIX}rebooted", me, started(me), boot="old")
    # A temporary folder shared over the network: another machine's boot.
    other_machine = _owned_by(
        tmp_path / f"{RESTORE_PREFIX}other-machine", me, 1, boot="old", machine="another"
    )
    no_machine = _owned_by(
        tmp_path / f"{RESTORE_PREFIX}no-machine", me, 1, boot="old", machine=None
    )
    rebooted_ns = _owned_by(
        tmp_path / f"{RESTORE_PREFIX}rebooted-ns", me, 1, boot="old", pid_namespace="pid:[1]"
    )
    running = _owned_by(tmp_path / f"{RESTORE_PREFIX}running", me, started(me))
    elsewhere_ns = _owned_by(
        tmp_path / f"{RESTORE_PREFIX}other-ns", finished.pid, 1, pid_namespace="pid:[1]"
    )
    unknown = _owned_by(tmp_path / f"{RESTORE_PREFIX}unknown", finished.pid, None)
    garbled = tmp_path / f"{RESTORE_PREFIX}garbled"
    garbled.mkdir()
    (garbled / OWNER_NAME).write_text("{not json")
    unowned = tmp_path / f"{RESTORE_PREFIX}unowned"
    unowned.mkdir()
    target = _owned_by(tmp_path / "elsewhere", finished.pid, finished_started)
    (tmp_path / f"{RESTORE_PREFIX}link").symlink_to(target)
    other = _owned_by(tmp_path / "other-prefix", finished.pid, finished_started)

    said = remove_abandoned(tmp_path)
    removed = [gone, stubborn, reused, rebooted]
    assert sorted(said) == sorted(
        f"removed {folder}, left by a run that was killed" for folder in removed
    )
    assert not any(folder.exists() for folder in removed)
    for kept in (running, elsewhere_ns, unknown, garbled, unowned, target, other):
        assert kept.is_dir(), kept
    for kept in (other_machine, no_machine, rebooted_ns):
        assert kept.is_dir(), kept


@pytest.mark.parametrize("prefix", [KEYS_FETCH_PREFIX, RESTORE_FETCH_PREFIX])
def test_n8n_backup_removes_what_a_killed_run_fetched(tmp_path: Path, prefix: str) -> None:
    """`keys pull` stages every key of the repository in /tmp, a restore from a repository the
    whole snapshot: killed there, they stay; the next n8n-backup command removes them."""
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal; from pathlib import Path; from backup.abandoned import "
            f"owned_temp_dir; d = owned_temp_dir({prefix!r}); "
            "(Path(d.name) / 'key').write_text('secret'); os.kill(os.getpid(), signal.SIGKILL)",
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(f"{prefix}*")
    assert (left / "key").is_file()
    live = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_path))
    claim(live)
    snapshots = tmp_path / "none"
    snapshots.mkdir()
    result = run_backup_cli(
        "list", "--snapshots", str(snapshots), env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert f"n8n-backup: removed {left}, left by a run that was killed" in result.stderr
    assert not left.exists() and live.is_dir()


def test_records_on_shared_servers_are_judged_only_for_this_boot_and_namespace() -> None:
    """A database's comment or a container's label may come from another machine using the
    same server or engine: its pid means nothing here, so only records of this boot and pid
    namespace are judged (unlike a folder in this machine's /tmp, removed after a reboot)."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished_started = started(finished.pid)
    finished.wait()
    me = os.getpid()

    assert json.loads(owner_record())["pid"] == me
    assert not owner_gone(owner_record())
    assert owner_gone(_record(finished.pid, finished_started))
    assert owner_gone(_record(me, started(me) - 1))  # the pid was taken again
    for kept in (
        _record(finished.pid, finished_started, boot="another machine or boot"),
        _record(finished.pid, finished_started, boot=None),
        _record(finished.pid, finished_started, pid_namespace="pid:[1]"),
        _record(finished.pid, None),
        _record(finished.pid, True),
        _record(str(finished.pid), finished_started),
        _record(0, 1),
        _record(-1, 1),
        _record(10**30, 1),
        _record(finished.pid, finished_started).replace(f"{finished.pid},", "1e999,", 1),
        "[" * 100_000 + "]" * 100_000,
        "{not json",
        "",
        "[]",
    ):
        assert not owner_gone(kept), kept[:80]


def test_a_process_that_cannot_be_seen_is_not_taken_for_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With /proc mounted hidepid=2 (or systemd's ProtectProc), another user's live run has
    no readable /proc entry: it still runs, as the kernel says when asked."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished_started = started(finished.pid)
    finished.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live_started = started(live.pid)
        monkeypatch.setattr("backup.abandoned.started", lambda pid: None)
        assert not owner_gone(_record(live.pid, live_started))
        assert owner_gone(_record(finished.pid, finished_started))
    finally:
        live.kill()
        live.wait()


def test_a_killed_run_stops_its_n8n_and_the_next_run_removes_its_copy(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    before = restored_folders()
    logs_before = _log_folders()
    verify = start_verify(
        _verify_one(taken, tmp_path, "--quiet-seconds", "60"),
        tmp_path,
    )
    try:
        assert wait_for_restored_instances(before, runner=verify), "verify never booted n8n"
        verify.send_signal(signal.SIGKILL)  # pytest alone: nothing of it runs to clean up
        verify.wait(timeout=30)
        assert wait_until_restored_instances_stop(before) == [], "n8n outlived a killed verify"
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    (left,) = restored_folders() - before
    logs_left = _log_folders() - logs_before
    assert logs_left, "the killed run's n8n log folder is not there to be removed"
    assert (Path(tempfile.gettempdir()) / left / ".n8n" / "config").is_file()

    live = Path(tempfile.mkdtemp(prefix=RESTORE_PREFIX))  # as a run going on beside this one
    claim(live)
    try:
        stderr = configure_only(_verify_one(taken, tmp_path), tmp_path)
        said = f"removed {Path(tempfile.gettempdir()) / left}, left by a run that was killed"
        assert said in stderr, stderr
        assert left not in restored_folders()
        assert not logs_left & _log_folders(), "the killed run's n8n log was not removed"
        assert live.is_dir(), "the copy of a run still going was removed"
    finally:
        shutil.rmtree(live)


def test_a_second_sigterm_while_verify_cleans_up_is_ignored(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """A CI job's timeout sends SIGTERM, then again before the clean-up is done: the second
    one must not cut the clean-up short (pytest would let it out as a traceback, leaving the
    restored copy with the key behind)."""
    before = restored_folders()
    verify = subprocess.Popen(
        _verify_one(taken, tmp_path, "--quiet-seconds", "60"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for_restored_instances(before, runner=verify), "verify never booted n8n"
        verify.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the second one while the first one's clean-up stops n8n
        verify.send_signal(signal.SIGTERM)
        output, _ = verify.communicate(timeout=120)
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    assert verify.returncode == 2, output[-3000:]  # pytest's "interrupted"
    assert "Traceback" not in output, output[-3000:]
    assert wait_until_restored_instances_stop(before) == []
    assert restored_folders() - before == set(), "the restored copy was left behind"


def test_a_sigterm_while_a_finished_run_cleans_up_is_ignored(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    """The checks are done and pytest stops n8n when a CI job's timeout strikes: the run ends
    as it would have, with its verdict, its clean-up whole."""
    before = restored_folders()
    verify = subprocess.Popen(
        _verify_one(taken, tmp_path, "--quiet-seconds", "1", "-q"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    assert verify.stdout is not None
    try:
        seen = []
        for line in verify.stdout:
            seen.append(line)
            if "[100%]" in line:  # the last check's result: the session's end begins
                verify.send_signal(signal.SIGTERM)
                break
        output = "".join(seen) + verify.communicate(timeout=120)[0]
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    # 0, or SIGTERM's own exit when it came after the run had put the handlers back (all done).
    assert verify.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert restored_folders() - before == set(), "the restored copy was left behind"


def _commands_of(folders: set[str], name: str) -> list[int]:
    """Running n8n CLI commands ``name`` on one of these restore folders."""
    found = []
    for pid in instances_of(folders):
        try:
            if name.encode() in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_slow_cli_command_does_not_hold_the_stop_up(taken: TakenSnapshot, tmp_path: Path) -> None:
    """SIGTERM while n8n's credential export runs (it can take minutes on a big instance,
    here it is frozen): the export is killed, the run stops at once and removes its copy."""
    before = restored_folders()
    verify = start_verify(
        _verify_one(taken, tmp_path, "--quiet-seconds", "60"),
        tmp_path,
    )
    frozen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not frozen and time.monotonic() < deadline and verify.poll() is None:
            frozen = _commands_of(restored_folders() - before, "export:credentials")
            time.sleep(0.05)
        assert frozen, "verify never ran n8n's credential export"
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        verify.send_signal(signal.SIGTERM)
        assert verify.wait(timeout=60) == 2  # pytest's "interrupted", not the export's timeout
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert all(started_or_none(pid) is None for pid in frozen), "the export outlived the run"
    assert wait_until_restored_instances_stop(before) == []
    assert restored_folders() - before == set(), "the restored copy was left behind"
