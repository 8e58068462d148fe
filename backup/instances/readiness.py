"""Waiting for an n8n instance to be ready to serve its REST API."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from backup.errors import N8nStartError

READINESS_PATHS = ("/healthz/readiness", "/rest/settings")
POLL_SECONDS = 0.5


def wait_until_ready(
    base_url: str,
    timeout: float,
    still_running: Callable[[], bool],
    describe_failure: Callable[[], str],
) -> float:
    """Poll readiness, then the REST settings (which can 404 for a moment after readiness).

    Returns the seconds it took. Raises N8nStartError when the process ends or time runs out.
    """
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        for path in READINESS_PATHS:
            while True:
                if not still_running():
                    raise N8nStartError(f"n8n exited before it was ready: {describe_failure()}")
                try:
                    response = client.get(path)
                    # While starting, n8n can answer 200 with a plain "n8n is starting up".
                    if response.status_code == 200 and response.text.startswith("{"):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise N8nStartError(
                        f"n8n at {base_url} was not ready within {timeout:.0f} s "
                        f"(waiting for {path}): {describe_failure()}. "
                        "Hint: raise --boot-timeout on a slow machine."
                    )
                time.sleep(POLL_SECONDS)
    return time.monotonic() - started
