"""Which DOCKER_HOST is a remote engine, and where a relay's port is published on it (the
end-to-end runs on a remote engine are in test_n8n_1x and test_postgres)."""

from __future__ import annotations

import pytest

from backup.errors import N8nStartError
from backup.n8n.docker_engine import engine_host, over_ssh, remote_engine
from backup.n8n.instances.remote import publish_address, published_url


@pytest.mark.parametrize(
    ("docker_host", "remote"),
    [
        ("", None),
        ("unix:///var/run/docker.sock", None),
        ("npipe:////./pipe/docker_engine", None),
        ("tcp://10.0.0.20:2376", "tcp://10.0.0.20:2376"),
        ("ssh://ops@builder.internal", "ssh://ops@builder.internal"),
    ],
)
def test_only_an_engine_over_the_network_is_remote(
    monkeypatch: pytest.MonkeyPatch, docker_host: str, remote: str | None
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert remote_engine() == remote


def test_the_relay_is_published_on_the_engine_address_when_it_is_one() -> None:
    assert engine_host("tcp://127.0.0.1:2375") == "127.0.0.1"
    assert publish_address("tcp://127.0.0.1:2375") == "127.0.0.1"  # loopback stays loopback
    assert publish_address("tcp://[::1]:2375") == "::1"
    assert publish_address("tcp://builder.internal:2376") == "0.0.0.0"  # only the engine knows
    with pytest.raises(N8nStartError, match="names no host"):
        engine_host("tcp://")
    assert published_url("tcp://[::1]:2375", 32768) == "http://[::1]:32768"
    assert published_url("tcp://10.0.0.20:2376", 32768) == "http://10.0.0.20:32768"
    assert published_url("tcp://builder.internal:2376", 80) == "http://builder.internal:80"


def test_over_ssh_the_relay_stays_on_the_engine_hosts_loopback() -> None:
    """Reached through an SSH tunnel: nothing is opened on the engine host's network."""
    assert over_ssh("ssh://ops@builder.internal:2222")
    assert not over_ssh("tcp://builder.internal:2376") and not over_ssh(None)
    assert engine_host("ssh://ops@builder.internal:2222") == "builder.internal"
    assert publish_address("ssh://ops@builder.internal") == "127.0.0.1"
