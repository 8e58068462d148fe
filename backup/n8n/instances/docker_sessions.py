"""What one verify session makes on a Docker engine (containers, volumes, its network), found
by the session's label, and removed at the session's end; a session killed outright (SIGKILL,
the OOM killer; testcontainers' reaper is off without a registry) leaves them running, and the
next run on that engine removes them. Each object also names the run that made it (an owner
record, see ``backup.abandoned``)."""

from __future__ import annotations

import contextlib
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException

from backup.abandoned import owner_gone, owner_record
from backup.n8n.docker_engine import ENGINE_ERRORS, engine_client

SESSION_LABEL = "n8n-restore-verify.session"
OWNER_LABEL = "n8n-restore-verify.owner"


def session_labels(session: str) -> dict[str, str]:
    """The labels of everything ``session`` makes on the engine: its name and its owner."""
    return {SESSION_LABEL: session, OWNER_LABEL: owner_record()}


def remove_session(client: DockerClient, session: str) -> int:
    """Remove every container (with its anonymous volumes), then every volume and network of
    ``session``; return how many objects were removed."""
    only = {"label": f"{SESSION_LABEL}={session}"}
    removed = 0
    for container in client.containers.list(all=True, filters=only, ignore_removed=True):
        with contextlib.suppress(DockerException):
            container.remove(force=True, v=True)
            removed += 1
    for volume in client.volumes.list(filters=only):
        with contextlib.suppress(DockerException):
            volume.remove(force=True)
            removed += 1
    for network in client.networks.list(filters=only):
        with contextlib.suppress(DockerException):
            network.remove()
            removed += 1
    return removed


def _labels(thing: Any) -> dict[str, str]:
    attrs = thing.attrs
    labels = attrs.get("Labels") if "Labels" in attrs else attrs.get("Config", {}).get("Labels")
    return labels if isinstance(labels, dict) else {}


def remove_abandoned_sessions() -> list[str]:
    """Remove what sessions of killed runs left on the engine DOCKER_HOST names (only runs of
    this machine are judged: see ``owner_gone``); one line per session removed, or why the
    engine could not be looked at."""
    try:
        client = engine_client(timeout=30)
    except ENGINE_ERRORS as exc:
        return [f"cannot look for containers left by killed runs: {exc}"]
    try:
        # Every object of a session, by the owner it names: a session goes only when every
        # one of its objects names a run that is gone (labels are set when an object is made,
        # by whoever makes it).
        owners: dict[str, set[str]] = {}
        sessions = {"label": SESSION_LABEL}
        listed = [
            *client.containers.list(all=True, filters=sessions, ignore_removed=True),
            *client.volumes.list(filters=sessions),
            *client.networks.list(filters=sessions),
        ]
        for thing in listed:
            labels = _labels(thing)
            if SESSION_LABEL in labels:
                owners.setdefault(labels[SESSION_LABEL], set()).add(labels.get(OWNER_LABEL, ""))
        said = []
        for session, records in sorted(owners.items()):
            if all(owner_gone(record) for record in records):
                count = remove_session(client, session)
                said.append(
                    f"removed {count} Docker objects of verify session {session} "
                    "(containers, volumes, network), left by a run that was killed"
                )
        return said
    except ENGINE_ERRORS as exc:
        return [f"cannot look for containers left by killed runs: {exc}"]
    finally:
        client.close()
