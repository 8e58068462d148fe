"""Which Docker engine this process talks to (DOCKER_HOST), and a client for it.

This machine's socket by default; an engine over the network when DOCKER_HOST says tcp://... or
ssh://.... On an ssh:// engine the Docker SDK runs ``docker system dial-stdio`` on the engine's
host through its own SSH client (paramiko: ~/.ssh/config's HostName, Port, User, IdentityFile and
ProxyCommand, the agent and default keys, ~/.ssh/known_hosts; an unknown host key is refused).
testcontainers reaches the same engine through the ``ssh`` program, as the docker CLI does; the
SDK's way through that program breaks on exec (it writes to a closed pipe when an exec ends).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from backup.errors import N8nStartError
from backup.extras import missing_extra

try:
    from docker.api.client import APIClient
    from docker.client import DockerClient
    from docker.errors import DockerException
except ImportError as exc:  # an optional part of the install
    raise missing_extra("docker", exc) from None

try:  # the docker extra's ssh part: errors of an SSH session that the SDK lets through
    from paramiko import SSHException as _SshError
except ImportError:  # without it the SDK refuses ssh:// with a DockerException of its own
    _SshError = DockerException

# What a request to the engine may raise: the SDK's errors, connection errors (requests' are
# OSErrors) and, over ssh://, those of the SSH session.
ENGINE_ERRORS: tuple[type[Exception], ...] = (DockerException, OSError, _SshError)
LOCAL_SCHEMES = ("unix", "npipe")
SSH_SCHEME = "ssh"
DEFAULT_TIMEOUT_SECONDS = 60  # the Docker SDK's own default
_KEEPS_VERIFY = "_n8n_restore_verify_keeps_verify"  # marks the SDK's client class as adjusted


def remote_engine() -> str | None:
    """DOCKER_HOST when it names an engine reached over the network (not a local socket)."""
    url = os.environ.get("DOCKER_HOST", "").strip()
    if not url or urlsplit(url).scheme in LOCAL_SCHEMES:
        return None
    return url


def over_ssh(url: str | None) -> bool:
    """Whether the engine ``url`` is reached over SSH."""
    return url is not None and urlsplit(url).scheme == SSH_SCHEME


def engine_host(url: str) -> str:
    """The host part of an engine URL: where its published ports are reached."""
    host = urlsplit(url).hostname
    if not host:
        raise N8nStartError(f"DOCKER_HOST {url!r} names no host: use tcp://HOST:PORT or ssh://HOST")
    return host


def keep_the_engines_authority() -> None:
    """Have every Docker SDK client (ours and testcontainers') check a TLS engine as it was
    configured: against DOCKER_CERT_PATH's ca.pem, or not at all when DOCKER_TLS_VERIFY is off,
    as the docker CLI does.

    requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (often set for a company's proxy) win
    over the authority a session was given (psf/requests#3829): the engine's certificate then
    fails as "self-signed certificate in certificate chain". Only the SDK's clients change, and
    only those configured with an authority of their own or with verification off; the
    environment is left alone. Call before any Docker client is used (idempotent).
    """
    if getattr(APIClient, _KEEPS_VERIFY, False):
        return
    merge_environment = APIClient.merge_environment_settings

    def merge_keeping_verify(
        self: Any, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings = merge_environment(self, url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:  # a CA file of its own, or no check
            settings["verify"] = self.verify
        return settings

    APIClient.merge_environment_settings = merge_keeping_verify
    setattr(APIClient, _KEEPS_VERIFY, True)


def engine_client(timeout: int = DEFAULT_TIMEOUT_SECONDS) -> DockerClient:
    """A client for the engine DOCKER_HOST names. Raises DockerException when none can be
    configured or an ssh:// engine's host does not let us in; whether the engine answers is
    the first request's business."""
    keep_the_engines_authority()
    try:
        return DockerClient.from_env(timeout=timeout)
    except DockerException:
        raise
    except ENGINE_ERRORS as exc:  # over ssh:// the SDK logs in when the client is made
        raise DockerException(f"cannot log in to {remote_engine()}: {exc}") from None
