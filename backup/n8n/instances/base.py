"""What every way of running a fresh n8n offers the verify suite."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol, Self

from backup.errors import N8nStartError

LOG_TAIL_LINES = 12
# n8n's features that call out (telemetry, version checks, templates, banners, licence
# renewal, community packages, tracing, AI), all turned off on every runtime and version.
OUTBOUND_OFF = {
    "N8N_DIAGNOSTICS_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false",
    "N8N_DYNAMIC_BANNERS_ENABLED": "false",
    "N8N_LICENSE_AUTO_RENEW_ENABLED": "false",
    "N8N_LICENSE_DETACH_FLOATING_ON_SHUTDOWN": "false",
    "N8N_LICENSE_ACTIVATION_KEY": "",
    "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
    "N8N_REINSTALL_MISSING_PACKAGES": "false",
    "N8N_VERIFIED_PACKAGES_ENABLED": "false",
    "N8N_UNVERIFIED_PACKAGES_ENABLED": "false",
    "N8N_OTEL_ENABLED": "false",
    "N8N_AI_ENABLED": "false",
    "N8N_AI_GATEWAY_ENABLED": "false",
    "N8N_SENTRY_DSN": "",
    "N8N_FRONTEND_SENTRY_DSN": "",
    "N8N_PERSONALIZATION_ENABLED": "false",
    "N8N_HIRING_BANNER_ENABLED": "false",
    "EXTERNAL_FRONTEND_HOOKS_URLS": "",
}
# Where the endpoints n8n lets us configure are pointed: a closed port on loopback, so that even
# a feature that stayed on reaches nothing. Tests point it at a canary that counts requests.
OUTBOUND_SINK = "http://127.0.0.1:9"
# n8n 2.x modules that call out on their own schedule (the MCP registry refreshes at start-up);
# n8n 1.x refuses to start on a module name it does not know, so only 2.x gets this.
DISABLED_MODULES_2X = "mcp-registry"


def outbound_env(n8n_version: str, sink: str = OUTBOUND_SINK) -> dict[str, str]:
    """Settings that keep a restored n8n of ``n8n_version`` from calling out: features off,
    configurable endpoints and the HTTP(S) proxy pointed at ``sink`` (loopback stays direct)."""
    env = {
        **OUTBOUND_OFF,
        "N8N_LICENSE_SERVER_URL": sink,
        "N8N_DIAGNOSTICS_CONFIG_BACKEND": f"off;{sink}",
        "N8N_DIAGNOSTICS_CONFIG_FRONTEND": f"off;{sink}",
        "N8N_DIAGNOSTICS_POSTHOG_API_HOST": sink,
        "N8N_VERSION_NOTIFICATIONS_ENDPOINT": f"{sink}/",
        "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENDPOINT": sink,
        "N8N_TEMPLATES_HOST": f"{sink}/",
        "N8N_DYNAMIC_BANNERS_ENDPOINT": sink,
        "N8N_COMMUNITY_PACKAGES_REGISTRY": sink,
        "HTTP_PROXY": sink,
        "HTTPS_PROXY": sink,
        "ALL_PROXY": sink,
        "NO_PROXY": "localhost,127.0.0.1,::1",
    }
    if not n8n_version.startswith("1."):
        env["N8N_DISABLED_MODULES"] = DISABLED_MODULES_2X
    return env


# The images the docker runtime boots by default ({version}: n8n's, {major}: PostgreSQL's).
OFFICIAL_IMAGE = "docker.n8n.io/n8nio/n8n:{version}"
OFFICIAL_POSTGRES_IMAGE = "postgres:{major}"

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


DEFAULT_BOOT_TIMEOUT = 180.0


class LaunchGuard:
    """Orders a driver's launches against its stop. verify boots in a thread of its own, so a
    stop (the run's end, Ctrl-C) can come while a boot is on its way to its start: once
    stopped, nothing starts any more, and a launch under way finishes before the stop goes on."""

    def __init__(self, refusal: str) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._refusal = refusal  # the N8nStartError of a launch after the stop

    @contextlib.contextmanager
    def launching(self) -> Iterator[None]:
        """Around what starts something: refused once stopped."""
        with self._lock:
            if self._stopped:
                raise N8nStartError(self._refusal)
            yield

    @contextlib.contextmanager
    def stopping(self) -> Iterator[None]:
        """Around the first step of a stop: from here on, launches are refused."""
        with self._lock:
            self._stopped = True
            yield


class BootsOnEnter(ABC):
    """What makes a driver a context manager, as testcontainers' containers are: ``with
    driver as running:`` starts n8n and waits up to ``boot_timeout`` for it, and always stops
    and cleans up on the way out, also when the start itself fails. ``start`` stays public for
    callers that must run n8n CLI commands on the data before n8n starts."""

    boot_timeout: float = DEFAULT_BOOT_TIMEOUT

    @abstractmethod
    def start(self, timeout: float) -> Self:
        """Start n8n and wait until its REST API answers; raise N8nStartError otherwise."""

    @abstractmethod
    def close(self) -> None:
        """Stop n8n and release everything it used."""

    def __enter__(self) -> Self:
        try:
            return self.start(self.boot_timeout)
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
