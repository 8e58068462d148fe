"""The independent credential cipher, against n8n's format."""

from __future__ import annotations

import base64
import subprocess

import pytest

from backup.cipher import CredentialDecryptError, decrypt_credential_data, encrypt_credential_data

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
