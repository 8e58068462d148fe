"""A signed-in editor session on a throwaway n8n: what n8n's editor asks, verify asks.

The editor's endpoints (``/types/nodes.json``, ``/rest/...``) need the auth cookie a login
issues, and a restored instance's passwords are unknown to us. n8n signs that cookie with a
secret it derives from the encryption key (2.x also keeps it, wrapped with that key, in
``deployment_key``), so with the snapshot's key the owner's cookie is signed as n8n would: the
user id and n8n's hash of the owner's email, password hash and MFA secret prefix. Only ever
used on the throwaway instance a snapshot was restored into.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import httpx
import jwt

from backup.errors import ApiError, N8nCheckError, SnapshotError
from backup.n8n.api import decode_json, error_detail, map_request_errors, transfer_headers
from backup.n8n.cipher import CredentialDecryptError, unwrap_data_key
from backup.n8n.tables import N8nTables, OwnerRow
from backup.secret import Secret

AUTH_COOKIE = "n8n-auth"
JWT_KEY_TYPE = "signing.jwt"
TOKEN_LIFETIME_SECONDS = 6 * 3600
TIMEOUT_SECONDS = 120.0


def instance_jwt_secret(tables: N8nTables, encryption_key: Secret) -> Secret:
    """The secret n8n signs its auth tokens with: the active ``signing.jwt`` deployment key
    when the database has one, else sha256 of every other character of the encryption key."""
    stored = tables.deployment_keys(JWT_KEY_TYPE)
    if stored:
        try:
            return Secret(unwrap_data_key(stored[0], encryption_key.reveal()))
        except CredentialDecryptError:
            raise SnapshotError(
                "the database's signing.jwt key does not unwrap with the snapshot's key"
            ) from None
    derived = hashlib.sha256(encryption_key.reveal()[::2].encode("utf-8")).hexdigest()
    return Secret(derived)


def _owner_hash(owner: OwnerRow) -> str:
    """n8n's ``createJWTHash``: sha256 of "email:passwordHash[:mfa prefix]", base64, 10 chars."""
    parts = [owner.email, owner.password_hash]
    if owner.mfa_secret:
        parts.append(owner.mfa_secret[:3])
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return base64.b64encode(digest).decode()[:10]


def auth_cookie(owner: OwnerRow, jwt_secret: Secret) -> str:
    """The owner's ``n8n-auth`` token, as n8n issues it after a login with MFA."""
    now = int(time.time())
    payload = {
        "id": owner.id,
        "hash": _owner_hash(owner),
        "usedMfa": True,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
    }
    return jwt.encode(payload, jwt_secret.reveal(), algorithm="HS256")


class EditorSession:
    """HTTP requests to one throwaway n8n as its signed-in owner."""

    def __init__(self, base_url: str, owner: OwnerRow, jwt_secret: Secret) -> None:
        self.base_url = base_url
        self._client = httpx.Client(
            base_url=base_url,
            cookies={AUTH_COOKIE: auth_cookie(owner, jwt_secret)},
            headers=transfer_headers(base_url),
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> EditorSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def answer(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request and return n8n's answer, errors included; ``N8nCheckError`` when
        n8n cannot be reached or refuses the session."""
        endpoint = f"{method} {path}"
        try:
            with map_request_errors(endpoint, self.base_url):
                response = self._client.request(method, path, **kwargs)
        except ApiError as exc:
            raise N8nCheckError(str(exc)) from None
        if response.status_code == 401:
            raise N8nCheckError(
                f"{endpoint}: n8n refused the owner's signed session (HTTP 401): the restored "
                "owner row does not sign in"
            )
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; ``N8nCheckError`` when n8n cannot be reached or refuses it."""
        endpoint = f"{method} {path}"
        response = self.answer(method, path, **kwargs)
        if response.status_code >= 400:
            raise N8nCheckError(f"{endpoint}: HTTP {response.status_code}{error_detail(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of one request; the REST API's ``{"data": ...}`` envelope removed."""
        return self.unwrapped(self.request(method, path, **kwargs), f"{method} {path}")

    @staticmethod
    def unwrapped(response: httpx.Response, endpoint: str) -> Any:
        """An answer's JSON, without the REST API's ``{"data": ...}`` envelope."""
        try:
            body = decode_json(response, endpoint)
        except ApiError as exc:
            raise N8nCheckError(str(exc)) from None
        if " /rest/" in endpoint and isinstance(body, dict) and "data" in body:
            return body["data"]
        return body
