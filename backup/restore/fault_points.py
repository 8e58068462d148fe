"""Named points in a restore where a test can stop the tool to inject a fault.

With ``N8N_BACKUP_PAUSE_AT=<point>[:<seconds>]`` in the environment, the restore says
``paused at <point>`` on stderr when it reaches that point and sleeps there (60 s by default),
so that a test can kill it, interrupt it or stop its container at exactly that moment. Without
the variable the points do nothing.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "N8N_BACKUP_PAUSE_AT"
# The snapshot's database and folders staged, before the journal's first step (nothing of n8n's
# touched yet); after the container stopped; in the middle of the database swap; after the
# swap, before the start; after the start, while n8n boots (the readiness wait).
STAGED, STOPPED, SWAPPING, SWAPPED, STARTED = "staged", "stopped", "swapping", "swapped", "started"
POINTS = (STAGED, STOPPED, SWAPPING, SWAPPED, STARTED)


_paused: set[str] = set()


def pause_point(name: str) -> None:
    """Sleep here if the environment asks for a pause at ``name`` (once per process: a
    rollback passes some points again)."""
    wanted = os.environ.get(PAUSE_ENV, "")
    point, _, seconds = wanted.partition(":")
    if point != name or name in _paused:
        return
    _paused.add(name)
    print(f"paused at {name}", file=sys.stderr, flush=True)
    time.sleep(float(seconds) if seconds else 60.0)
