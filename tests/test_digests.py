"""Fingerprints and digests: stable, one-way, and keyed where they must be."""

from __future__ import annotations

from pathlib import Path

from backup.digests import (
    FINGERPRINT_HEX_CHARS,
    credential_digest,
    key_fingerprint,
    sha256_file,
    workflow_digest,
)


def test_fingerprint_is_stable_short_and_does_not_contain_the_key() -> None:
    key = "abcdef0123456789abcdef0123456789"
    fingerprint = key_fingerprint(key)
    assert fingerprint == key_fingerprint(key)
    assert len(fingerprint) == FINGERPRINT_HEX_CHARS
    assert key not in fingerprint and fingerprint != key_fingerprint(key + "x")


def test_workflow_digest_ignores_key_order_but_not_content() -> None:
    nodes = [{"name": "A", "parameters": {"x": 1, "y": 2}}]
    reordered = [{"parameters": {"y": 2, "x": 1}, "name": "A"}]
    assert workflow_digest(nodes, {}) == workflow_digest(reordered, {})
    assert workflow_digest(nodes, {}) != workflow_digest(nodes, {"A": {}})


def test_credential_digest_depends_on_the_key() -> None:
    data = {"password": "1234"}
    assert credential_digest(data, "k1") == credential_digest({"password": "1234"}, "k1")
    assert credential_digest(data, "k1") != credential_digest(data, "k2")
    assert "1234" not in credential_digest(data, "k1")


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
