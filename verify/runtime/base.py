"""What every way of running a fresh n8n offers the verify suite."""

from __future__ import annotations

import subprocess
from typing import Protocol

LOG_TAIL_LINES = 12
# n8n's features that call out (telemetry, version checks, templates, community packages,
# banners ...), all turned off on both runtimes; named in the report.
OUTBOUND_OFF = {
    "N8N_DIAGNOSTICS_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false",
    "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
    "N8N_PERSONALIZATION_ENABLED": "false",
    "N8N_HIRING_BANNER_ENABLED": "false",
    "EXTERNAL_FRONTEND_HOOKS_URLS": "",
}
# Settings that keep a restored instance quiet: no telemetry, no calls home, no banners.
QUIET_ENV = {
    **OUTBOUND_OFF,
    "N8N_PROTOCOL": "http",
    "N8N_SECURE_COOKIE": "false",
    "N8N_DEV_RELOAD": "false",
    "N8N_LOG_LEVEL": "info",
    "N8N_LOG_OUTPUT": "console",
    "DB_TYPE": "sqlite",
    "GENERIC_TIMEZONE": "UTC",
}


class N8nInstance(Protocol):
    """A fresh n8n on restored data: a local process or a container."""

    ready_seconds: float | None

    @property
    def base_url(self) -> str:
        """Root URL that reaches the instance from this machine."""
        ...

    def start(self, timeout: float) -> N8nInstance:
        """Start n8n and wait until its REST API answers; raise N8nStartError otherwise."""
        ...

    def is_running(self) -> bool:
        """Whether n8n is still alive."""
        ...

    def logs(self) -> str:
        """Everything n8n printed so far."""
        ...

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an n8n CLI command with the instance's own environment and data."""
        ...

    def stop(self) -> None:
        """Stop n8n (and remove what was started for it)."""
        ...

    def close(self) -> None:
        """Stop n8n and release everything it used."""
        ...


def log_tail(logs: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log joined on one line, for error messages."""
    tail = [line.strip() for line in logs.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(n8n printed nothing)"
