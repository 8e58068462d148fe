"""Waiting for an n8n instance to be ready to serve its REST API."""

from __future__ import annotations

import re
import time
from typing import Protocol

import httpx

from backup.errors import N8nStartError
from backup.n8n.instances.base import log_tail

READINESS_PATHS = ("/healthz/readiness", "/rest/settings")
POLL_SECONDS = 0.5


class Booting(Protocol):
    """What the wait needs of an instance: where it answers, whether it still runs, its log."""

    @property
    def base_url(self) -> str:
        """Root URL that reaches n8n from this machine."""
        ...

    def is_running(self) -> bool:
        """Whether n8n (its process or container) is still alive."""
        ...

    def logs(self) -> str:
        """What n8n printed so far (its tail goes into the error message)."""
        ...


def listen_message(address: str, port: int) -> str:
    """What n8n prints once its server listens on ``address``:``port``."""
    return f"n8n ready on {address}, port {port}"


def wait_until_ready(
    instance: Booting, timeout: float, *, listening_line: str | None = None
) -> float:
    """Poll readiness, then the REST settings (which can 404 for a moment after readiness).

    On a port of the host, pass ``listening_line``: an answer counts only once the instance's
    own log says it listens there, since until then the answer may come from another program
    that took the port first (another n8n would pass for this one).

    Returns the seconds it took. Raises N8nStartError when n8n stops running or time runs out.
    """
    base_url = instance.base_url
    # The port number whole: "port 567" is not "port 5678".
    listening = (
        None if listening_line is None else re.compile(re.escape(listening_line) + r"(?!\d)")
    )

    def describe_failure() -> str:
        return log_tail(instance.logs())

    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        for path in READINESS_PATHS:
            while True:
                if not instance.is_running():
                    raise N8nStartError(f"n8n exited before it was ready: {describe_failure()}")
                try:
                    response = client.get(path)
                    # While starting, n8n can answer 200 with a plain "n8n is starting up".
                    if (
                        response.status_code == 200
                        and response.text.startswith("{")
                        and (listening is None or listening.search(instance.logs()))
                    ):
                        listening = None  # heard once is enough
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
