"""Digests that let verify compare what came back with what went in, without keeping secrets.

- key fingerprint: identifies an encryption key; the key cannot be recovered from it.
- workflow digest: sha256 of a workflow's nodes and connections in canonical JSON.
- credential digest: HMAC keyed with a secret derived from the encryption key, so the digest of a
  short password cannot be brute-forced by whoever holds only the snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

_FINGERPRINT_CONTEXT = b"n8n-restore-verify/key-fingerprint/v1\x00"
_CREDENTIAL_DIGEST_CONTEXT = b"n8n-restore-verify/credential-digest/v1"
_MANIFEST_MAC_CONTEXT = b"n8n-restore-verify/manifest-mac/v1"
_ENTITY_DIGEST_CONTEXT = b"n8n-restore-verify/entity-digest/v1"
FINGERPRINT_HEX_CHARS = 32
ROW_HASH_HEX_CHARS = 16
_CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace, so equal data gives equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def key_fingerprint(encryption_key: str) -> str:
    """A short, stable, one-way identifier of an encryption key."""
    digest = hashlib.sha256(_FINGERPRINT_CONTEXT + encryption_key.encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_HEX_CHARS]


def workflow_digest(nodes: Any, connections: Any) -> str:
    """Digest of what a workflow does: its nodes and how they connect."""
    body = canonical_json({"nodes": nodes, "connections": connections})
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _derived_key(encryption_key: str, context: bytes) -> bytes:
    """A secret for one purpose, derived from the encryption key (one key, several uses)."""
    return hmac.new(encryption_key.encode("utf-8"), context, hashlib.sha256).digest()


def credential_digest(decrypted: dict[str, Any], encryption_key: str) -> str:
    """Keyed digest of a credential's decrypted data."""
    digest_key = _derived_key(encryption_key, _CREDENTIAL_DIGEST_CONTEXT)
    return "hmac-sha256:" + hmac.new(digest_key, canonical_json(decrypted), "sha256").hexdigest()


def entity_row_hash(row: Any, encryption_key: str) -> str:
    """A short keyed hash of one entity row (canonical JSON): keyed because rows hold emails
    and variable values; per row so that a restore can say which rows it lost and tell rows
    an upgrade added from rows it lost."""
    digest_key = _derived_key(encryption_key, _ENTITY_DIGEST_CONTEXT)
    return hmac.new(digest_key, canonical_json(row), "sha256").hexdigest()[:ROW_HASH_HEX_CHARS]


def manifest_mac(body: dict[str, Any], encryption_key: str) -> str:
    """MAC of a manifest's JSON object (every field but the MAC), keyed from the encryption
    key: the key store can check it, the snapshot folder alone cannot forge it."""
    mac_key = _derived_key(encryption_key, _MANIFEST_MAC_CONTEXT)
    return "hmac-sha256:" + hmac.new(mac_key, canonical_json(body), "sha256").hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
