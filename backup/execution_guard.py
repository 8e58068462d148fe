"""Waiting for running executions to finish before a backup (n8n is never stopped for it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from backup.errors import ExecutionsRunningError
from backup.n8n.api import N8nApi

POLL_SECONDS = 2.0


def wait_for_idle(
    api: N8nApi,
    timeout: float,
    *,
    force: bool,
    say: Callable[[str], None],
    poll_seconds: float = POLL_SECONDS,
) -> int:
    """Wait until the instance runs no execution; return how many ran when we went ahead.

    With ``force`` nothing is waited for: the count is returned so that the manifest can record
    that the snapshot was forced. Without it, a wait longer than ``timeout`` is an error.
    """
    running = api.running_executions()
    if not running or force:
        if running:
            say(f"--force: taking the snapshot while {running} execution(s) are running")
        return running
    say(f"waiting up to {timeout:.0f} s for {running} running execution(s) to finish")
    started = time.monotonic()
    while running:
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise ExecutionsRunningError(
                f"{running} execution(s) still running after {timeout:.0f} s: try again later, "
                "raise --wait-timeout, or pass --force to back up anyway"
            )
        time.sleep(min(poll_seconds, timeout - elapsed))
        running = api.running_executions()
        say(f"  {running} still running after {time.monotonic() - started:.0f} s")
    return 0
