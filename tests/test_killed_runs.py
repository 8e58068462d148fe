"""A verify run killed outright (SIGKILL: the OOM killer, a CI runner's last resort) cannot
clean up after itself: its n8n stops with it all the same (the kernel's parent-death signal),
and the next run removes the restored copy it left, with the data and the key in it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.n8n_support import TakenSnapshot, copy_variant, instances_of, restored_folders
from tests.verify_runner import verify_command
from verify.restore import OWNER_NAME, RESTORE_PREFIX, remove_abandoned_copies

PROCESS = ("--runtime", "process", "-p", "no:cacheprovider")


def _owned_by(folder: Path, pid: int, started: object) -> Path:
    folder.mkdir(mode=0o700)
    (folder / OWNER_NAME).write_text(json.dumps({"pid": pid, "started": started}))
    return folder


def _started(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def test_only_copies_whose_run_is_gone_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    finished_started = _started(finished.pid)
    finished.wait()
    me = os.getpid()
    gone = _owned_by(tmp_path / f"{RESTORE_PREFIX}gone", finished.pid, finished_started)
    reused = _owned_by(tmp_path / f"{RESTORE_PREFIX}reused", me, _started(me) - 1)
    running = _owned_by(tmp_path / f"{RESTORE_PREFIX}running", me, _started(me))
    unknown = _owned_by(tmp_path / f"{RESTORE_PREFIX}unknown", finished.pid, None)
    garbled = tmp_path / f"{RESTORE_PREFIX}garbled"
    garbled.mkdir()
    (garbled / OWNER_NAME).write_text("{not json")
    unowned = tmp_path / f"{RESTORE_PREFIX}unowned"
    unowned.mkdir()
    elsewhere = _owned_by(tmp_path / "elsewhere", finished.pid, finished_started)
    (tmp_path / f"{RESTORE_PREFIX}link").symlink_to(elsewhere)
    other = _owned_by(tmp_path / "other-prefix", finished.pid, finished_started)

    assert remove_abandoned_copies(tmp_path) == [gone, reused]
    assert not gone.exists() and not reused.exists()
    for kept in (running, unknown, garbled, unowned, elsewhere, other):
        assert kept.is_dir(), kept


def test_a_killed_run_stops_its_n8n_and_the_next_run_removes_its_copy(
    taken: TakenSnapshot, tmp_path: Path
) -> None:
    root = tmp_path / "snapshots"
    copy_variant(taken, root, "one")
    reports = ("--html", str(tmp_path / "r.html"), "--junitxml", str(tmp_path / "r.xml"))
    before = restored_folders()
    verify = subprocess.Popen(
        verify_command(root, taken.key_store, *PROCESS, "--quiet-seconds", "60", *reports),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not instances_of(restored_folders() - before) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert instances_of(restored_folders() - before), "verify never booted n8n"
        verify.send_signal(signal.SIGKILL)  # pytest alone: nothing of it runs to clean up
        verify.wait(timeout=30)
        deadline = time.monotonic() + 30
        while instances_of(restored_folders() - before) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert instances_of(restored_folders() - before) == [], "n8n outlived a killed verify"
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    (left,) = restored_folders() - before
    assert (Path(tempfile.gettempdir()) / left / ".n8n" / "config").is_file()

    live = Path(tempfile.mkdtemp(prefix=RESTORE_PREFIX))  # as a run going on beside this one
    (live / OWNER_NAME).write_text(
        json.dumps({"pid": os.getpid(), "started": _started(os.getpid())})
    )
    try:
        nxt = subprocess.run(
            verify_command(root, taken.key_store, *PROCESS, "--collect-only", *reports),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        said = f"removed {Path(tempfile.gettempdir()) / left}, a restored copy left by a verify run"
        assert said in nxt.stderr, nxt.stderr
        assert left not in restored_folders()
        assert live.is_dir(), "the copy of a run still going was removed"
    finally:
        shutil.rmtree(live)
