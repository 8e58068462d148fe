"""The independent credential cipher, against n8n's format."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest

from backup.n8n.cipher import (
    CredentialDecryptError,
    DataKey,
    decrypt_credential_data,
    encrypt_credential_data,
    encrypt_prefixed_credential_data,
    unwrap_data_key,
    wrap_data_key,
)

KEY = "a-test-encryption-key-0123456789"


def test_round_trip() -> None:
    data = {"user": "ünïcode", "password": "s3cret", "nested": {"n": 1}}
    assert decrypt_credential_data(encrypt_credential_data(data, KEY), KEY) == data


def test_decrypts_what_openssl_encrypts() -> None:
    """OpenSSL's enc -md md5 is the reference for the CryptoJS "Salted__" format n8n uses."""
    plain = b'{"token":"from-openssl"}'
    cipher = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-md", "md5", "-salt", "-pass", f"pass:{KEY}"],
        input=plain,
        capture_output=True,
        check=True,
    ).stdout
    assert decrypt_credential_data(base64.b64encode(cipher).decode(), KEY) == {
        "token": "from-openssl"
    }


def test_wrong_key_fails_without_plaintext_in_message() -> None:
    ciphertext = encrypt_credential_data({"password": "hunter2-secret"}, KEY)
    with pytest.raises(CredentialDecryptError) as info:
        decrypt_credential_data(ciphertext, "another-key")
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "ciphertext",
    [
        "not base64 !",
        base64.b64encode(b"plain text, no salt").decode(),
        base64.b64encode(b"Salted__12345678" + b"x" * 17).decode(),
    ],
    ids=["not-base64", "no-salt-header", "truncated-block"],
)
def test_malformed_data_is_a_decrypt_error(ciphertext: str) -> None:
    with pytest.raises(CredentialDecryptError):
        decrypt_credential_data(ciphertext, KEY)


def test_key_rotation_format_round_trip_and_failures() -> None:
    """``<keyId>:<base64>`` with an AES-256-GCM data key wrapped by the instance key."""
    raw_key = os.urandom(32).hex()
    data_keys = {"dek-1": DataKey(wrap_data_key(raw_key, KEY), "aes-256-gcm")}
    ciphertext = encrypt_prefixed_credential_data({"token": "rotated"}, "dek-1", raw_key)
    assert ciphertext.startswith("dek-1:")
    assert decrypt_credential_data(ciphertext, KEY, data_keys) == {"token": "rotated"}
    with pytest.raises(CredentialDecryptError, match="data key dek-1 is not in"):
        decrypt_credential_data(ciphertext, KEY, {})
    with pytest.raises(CredentialDecryptError, match="does not decrypt"):
        decrypt_credential_data(ciphertext, "another-instance-key", data_keys)
    assert unwrap_data_key(data_keys["dek-1"], KEY) == raw_key


def test_key_rotation_with_a_cbc_data_key() -> None:
    raw_key = os.urandom(32).hex()
    body = encrypt_credential_data({"user": "cbc"}, raw_key)
    data_keys = {"legacy": DataKey(wrap_data_key(raw_key, KEY), "aes-256-cbc")}
    assert decrypt_credential_data(f"legacy:{body}", KEY, data_keys) == {"user": "cbc"}
