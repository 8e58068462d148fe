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
    """Started as a script's background job (`n8n-demo &`: SIGINT ignored, and so in the
    verify it starts), the demo still stops verify at once."""
    before = restored_folders()
    demo_command = [sys.executable, "-m", "verify.demo", "--work-dir", str(tmp_path / "demo")]
    output = tmp_path / "stdout"
    with output.open("w") as stdout_file:
        demo = subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *demo_command],
            cwd=tmp_path,
            stdout=stdout_file,
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
    stdout = output.read_text()
    assert demo.returncode == 130, stderr
    assert "KeyboardInterrupt" in stdout, "verify ran on to its end: " + stdout[-2000:]
    assert stderr.strip().splitlines()[-1] == "n8n-demo: interrupted", stderr
    assert wait_until_restored_instances_stop(before) == [], "verify's n8n outlived the demo"
    assert restored_folders() - before == set(), "a restored copy was left behind"
