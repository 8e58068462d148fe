"""The README's first command, n8n-demo, stopped while it verifies: SIGTERM (a CI job's timeout,
docker stop) reaches the demo alone, which passes it on to verify as Ctrl-C; verify stops its
n8n and removes its restored copy, and the demo says it was interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.n8n_support import (
    restored_folders,
    wait_for_restored_instances,
    wait_until_restored_instances_stop,
)


def test_demo_stopped_while_verifying_leaves_nothing_running(tmp_path: Path) -> None:
    before = restored_folders()
    demo = subprocess.Popen(
        [sys.executable, "-m", "verify.demo", "--work-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        booted = wait_for_restored_instances(before, seconds=300, runner=demo)
        assert booted, "the demo's verify never booted n8n"
        demo.send_signal(signal.SIGTERM)
        _, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "n8n-demo: interrupted", stderr
    assert wait_until_restored_instances_stop(before) == [], "verify's n8n outlived the demo"
    assert restored_folders() - before == set(), "a restored copy was left behind"
