"""Which DOCKER_HOST is a remote engine, and where a relay's port is published on it (the
end-to-end runs on a remote engine are in test_n8n_1x and test_postgres)."""

from __future__ import annotations

import pytest

from backup.errors import N8nStartError
from backup.n8n.instances.remote import engine_host, publish_address, remote_engine


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
    assert publish_address("127.0.0.1") == "127.0.0.1"  # a loopback engine stays on loopback
    assert engine_host("ssh://ops@builder.internal") == "builder.internal"
    assert publish_address("builder.internal") == "0.0.0.0"  # only the engine knows which
    with pytest.raises(N8nStartError, match="names no host"):
        engine_host("tcp://")
