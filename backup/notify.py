"""Telling a person: the result of a verify run, a snapshot or a prune, posted to URLs.

Three kinds of receiver, by the URL's scheme:

- ``https://...`` (or ``http://``): a generic JSON webhook, the whole outcome as JSON;
- ``slack+https://...``: a Slack-compatible incoming webhook, ``{"text": ...}``;
- ``ping+https://...``: a healthchecks.io-style check: ``<url>/start`` when the job starts,
  ``<url>`` on success, ``<url>/fail`` with the summary as body on failure. A ping check needs
  to hear about successes, so it is pinged on every run whatever ``--notify-on`` says.

Webhooks hear about failures only, unless ``--notify-on always``. A receiver that cannot be
reached is reported (without its URL, which often holds a token) and never turns a passing
run into a failure. Payloads hold no secrets: verdicts, snapshot ids, first causes, counts.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from backup.errors import InputError

TIMEOUT_SECONDS = 15.0
ON_FAILURE, ALWAYS = "failure", "always"
NOTIFY_ON = (ON_FAILURE, ALWAYS)
SLACK_PREFIX, PING_PREFIX = "slack+", "ping+"
MAX_TEXT = 3000


@dataclass(frozen=True)
class Outcome:
    """What happened, as every receiver is told."""

    job: str  # "verify", "snapshot", "prune"
    ok: bool
    summary: str  # one line
    details: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)

    @property
    def verdict(self) -> str:
        """PASSED or FAILED."""
        return "PASSED" if self.ok else "FAILED"

    def text(self) -> str:
        """The outcome for a person, in a few lines."""
        return f"n8n-restore-verify {self.job} on {self.host}: {self.verdict}: {self.summary}"[
            :MAX_TEXT
        ]


def check_url(url: str) -> str:
    """A notify URL, or InputError naming what is wrong (never echoing a token)."""
    plain = url.removeprefix(SLACK_PREFIX).removeprefix(PING_PREFIX)
    try:
        parsed = httpx.URL(plain)
    except (httpx.InvalidURL, ValueError):
        raise InputError("a --notify URL is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(
            "a --notify URL must be http(s)://..., slack+https://... or ping+https://..."
        )
    return url


def _where(url: str) -> str:
    """A receiver as messages name it: scheme and host, never its path (often a token)."""
    parsed = httpx.URL(url.removeprefix(SLACK_PREFIX).removeprefix(PING_PREFIX))
    kinds = {SLACK_PREFIX: "Slack", PING_PREFIX: "ping"}
    kind = next((name for prefix, name in kinds.items() if url.startswith(prefix)), "webhook")
    return f"{kind} at {parsed.scheme}://{parsed.host}"


def ping_start(urls: Iterable[str], post: Callable[..., httpx.Response] | None = None) -> list[str]:
    """Tell ping checks the job has started; return the problems (one line each)."""
    sender = post or httpx.post
    problems = []
    for url in urls:
        if url.startswith(PING_PREFIX):
            problem = _send(sender, url, url.removeprefix(PING_PREFIX).rstrip("/") + "/start", None)
            if problem:
                problems.append(problem)
    return problems


def notify(
    urls: Iterable[str],
    outcome: Outcome,
    notify_on: str = ON_FAILURE,
    post: Callable[..., httpx.Response] | None = None,
) -> list[str]:
    """Post ``outcome`` to each receiver that should hear of it; return the problems."""
    sender = post or httpx.post
    problems = []
    for url in urls:
        if url.startswith(PING_PREFIX):
            base = url.removeprefix(PING_PREFIX).rstrip("/")
            target = base if outcome.ok else base + "/fail"
            problem = _send(sender, url, target, outcome.text().encode("utf-8"))
        elif outcome.ok and notify_on != ALWAYS:
            continue
        elif url.startswith(SLACK_PREFIX):
            body = json.dumps({"text": outcome.text()}).encode("utf-8")
            problem = _send(sender, url, url.removeprefix(SLACK_PREFIX), body, json_body=True)
        else:
            payload = {"verdict": outcome.verdict, "text": outcome.text(), **asdict(outcome)}
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            problem = _send(sender, url, url, body, json_body=True)
        if problem:
            problems.append(problem)
    return problems


def _send(
    post: Callable[..., httpx.Response],
    url: str,
    target: str,
    body: bytes | None,
    *,
    json_body: bool = False,
) -> str | None:
    headers = {"Content-Type": "application/json" if json_body else "text/plain; charset=utf-8"}
    try:
        response = post(target, content=body or b"", headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return f"cannot notify the {_where(url)}: {type(exc).__name__}"
    if response.status_code >= 400:
        return f"the {_where(url)} answered HTTP {response.status_code}"
    return None
