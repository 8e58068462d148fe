"""n8n's own credential test (the editor's "Test" button), run on a restored instance when the
operator asks for it: the only check that lets a restored n8n reach the services its
credentials point at.

The credentials are sent as the editor sends them: redacted, so that n8n fills in the stored
secrets itself. n8n's messages are passed on with every secret value of the credential
replaced, in case a service echoes one back.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from backup.errors import N8nCheckError
from backup.manifest import CredentialEntry
from backup.n8n.cipher import CredentialDecryptError, DataKey, decrypt_credential_data
from backup.n8n.session import EditorSession
from backup.n8n.tables import CredentialRow
from backup.secret import Secret

PASSED, FAILED, NO_TEST = "passed", "failed", "no test available"
OUTCOMES = (PASSED, FAILED, NO_TEST)
# What n8n answers for a type without a test (2.x in its answer, 1.x as an HTTP 500).
_NO_TEST_HINTS = ("no testing function", "unrecognized node type")
_HOST_FIELDS = frozenset({"host", "hostname", "server"})
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
REDACTED = "[redacted]"
MESSAGE_LIMIT = 300
MIN_SECRET_LENGTH = 4


@dataclass(frozen=True)
class CredentialTest:
    """What n8n's test said about one credential (the message has no secret in it)."""

    id: str
    name: str
    type: str
    outcome: str
    message: str


def _strings(value: Any) -> Iterable[tuple[str, str]]:
    """(field, text) for every string in a credential's decrypted data."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield str(key), item
            else:
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def reachable_hosts(decrypted: Iterable[dict[str, Any]]) -> set[str]:
    """The hosts the credentials point at: hosts of http(s) URLs and host fields."""
    hosts = set()
    for data in decrypted:
        for field, text in _strings(data):
            try:
                parsed = urllib.parse.urlsplit(text.strip())
                host = parsed.hostname if parsed.scheme in ("http", "https") else None
            except ValueError:
                continue
            if host is None and field.lower() in _HOST_FIELDS:
                host = text.strip()
            if host and _plain_host(host):
                hosts.add(host.lower())
    return hosts


def _plain_host(host: str) -> bool:
    """A DNS name or an IP address, nothing that could widen a NO_PROXY list (",", "*")."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))
    return True


def credential_secrets(
    rows: Iterable[CredentialRow], encryption_key: Secret, data_keys: dict[str, DataKey]
) -> tuple[set[str], dict[str, list[Secret]]]:
    """Decrypt each credential once, in Python: the hosts they point at, and per credential
    id its secret values (as Secrets). Credentials that do not decrypt are left out."""
    hosts: set[str] = set()
    hidden: dict[str, list[Secret]] = {}
    for row in rows:
        try:
            data = decrypt_credential_data(row.data, encryption_key.reveal(), data_keys)
        except CredentialDecryptError:
            continue  # test_key reports it
        hosts |= reachable_hosts([data])
        hidden[row.id] = secret_values(data)
    return hosts, hidden


def secret_values(data: dict[str, Any]) -> list[Secret]:
    """The credential's string values long enough to be worth hiding, longest first."""
    values = {text for _, text in _strings(data) if len(text) >= MIN_SECRET_LENGTH}
    return [Secret(text) for text in sorted(values, key=len, reverse=True)]


def _redacted(message: str, hidden: list[Secret]) -> str:
    """``message`` on one line, every secret value replaced (also as a one-line value: a PEM
    key's lines are joined like the message's), then shortened."""
    for secret in hidden:
        message = message.replace(secret.reveal(), REDACTED)
    message = " ".join(message.split())
    for secret in hidden:
        message = message.replace(" ".join(secret.reveal().split()), REDACTED)
    return message[:MESSAGE_LIMIT]


def _outcome(status: object, message: str) -> str:
    if status == "OK":
        return PASSED
    if any(hint in message.lower() for hint in _NO_TEST_HINTS):
        return NO_TEST
    return FAILED


def run_credential_test(
    session: EditorSession, entry: CredentialEntry, hidden: list[Secret]
) -> CredentialTest:
    """Ask the restored n8n to test one credential, as its editor's Test button does."""
    stored = session.json(
        "GET",
        f"/rest/credentials/{urllib.parse.quote(entry.id, safe='')}",
        params={"includeData": "true"},
    )
    if not isinstance(stored, dict):
        raise N8nCheckError(f"credential {entry.id}: n8n did not answer an object")
    body = {
        "credentials": {
            "id": entry.id,
            "name": entry.name,
            "type": entry.type,
            "data": stored.get("data") or {},
        }
    }
    response = session.answer("POST", "/rest/credentials/test", json=body)
    if response.status_code >= 400:  # n8n 1.x answers HTTP 500 for a type it cannot test
        message = _redacted(f"HTTP {response.status_code}: {response.text}", hidden)
        return CredentialTest(entry.id, entry.name, entry.type, _outcome(None, message), message)
    answer = session.unwrapped(response, "POST /rest/credentials/test")
    if not isinstance(answer, dict):
        raise N8nCheckError(f"credential {entry.id}: n8n's test did not answer an object")
    message = _redacted(str(answer.get("message") or ""), hidden)
    outcome = _outcome(answer.get("status"), message)
    return CredentialTest(entry.id, entry.name, entry.type, outcome, message)
