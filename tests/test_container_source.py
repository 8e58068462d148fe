"""Finding n8n's data in a container's mounts (docker inspect output, as the SDK returns it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backup.errors import InputError
from backup.n8n.container import _data_mount, _published_api_url


def attrs(*mounts: dict[str, str], ports: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Name": "/n8n", "Mounts": list(mounts), "NetworkSettings": {"Ports": ports or {}}}


def test_named_volume_on_the_n8n_folder() -> None:
    volume = {
        "Type": "volume",
        "Source": "/var/lib/docker/volumes/n8n_data/_data",
        "Destination": "/home/node/.n8n",
    }
    assert _data_mount(attrs(volume), "/home/node") == (Path(volume["Source"]), "")


def test_bind_mount_of_the_home_folder_wins_over_nothing_but_loses_to_a_closer_one() -> None:
    home = {"Type": "bind", "Source": "/srv/n8n-home", "Destination": "/home/node"}
    assert _data_mount(attrs(home), "/home/node") == (Path("/srv/n8n-home"), ".n8n")
    closer = {"Type": "bind", "Source": "/srv/n8n-data", "Destination": "/home/node/.n8n/"}
    assert _data_mount(attrs(home, closer), "/home/node") == (Path("/srv/n8n-data"), "")


def test_custom_user_folder() -> None:
    data = {"Type": "bind", "Source": "/data", "Destination": "/data"}
    assert _data_mount(attrs(data), "/data") == (Path("/data"), ".n8n")


def test_data_in_the_container_layer_is_refused() -> None:
    other = {"Type": "bind", "Source": "/x", "Destination": "/files"}
    with pytest.raises(InputError, match="not in a volume or bind mount"):
        _data_mount(attrs(other), "/home/node")


def test_published_port() -> None:
    ports = {"5678/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5678"}]}
    assert _published_api_url(attrs(ports=ports)) == "http://127.0.0.1:5678"
    assert _published_api_url(attrs()) is None
