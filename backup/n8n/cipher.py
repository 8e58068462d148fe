"""n8n's credential encryption, reimplemented independently of n8n.

Two formats exist in n8n's ``credentials_entity.data``:

- legacy (n8n 1.x, and 2.x by default): CryptoJS/OpenSSL "Salted__" AES-256-CBC in base64; an
  8-byte salt follows the magic, and key and IV come from EVP_BytesToKey (MD5, one round) over
  the instance's encryption key and that salt.
- prefixed (2.x with N8N_ENV_FEAT_ENCRYPTION_KEY_ROTATION=true): ``<keyId>:<base64>``, encrypted
  with a data key from the ``deployment_key`` table. That data key is stored wrapped: AES-256-GCM
  under sha256(instance key). n8n's GCM format is base64 of version byte 0x01, a 32-byte salt,
  the 16-byte tag and the ciphertext; key and nonce come from HKDF-SHA256 over the raw key with
  that salt and the info "n8n-encryption-v1".

A wrong key shows as bad padding, a failed tag, or text that is not JSON; all raise
:class:`CredentialDecryptError`, whose message never holds plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALTED_MAGIC = b"Salted__"
_KEY_LEN = 32
_IV_LEN = 16
_GCM_VERSION = 0x01
_GCM_SALT_LEN = 32
_GCM_TAG_LEN = 16
_GCM_NONCE_LEN = 12
_GCM_INFO = b"n8n-encryption-v1"
_KEY_ID = re.compile(r"^([A-Za-z0-9_-]{1,36}):(.+)$", re.DOTALL)


class CredentialDecryptError(ValueError):
    """The ciphertext does not decrypt to JSON with this key (wrong key or damaged data)."""


@dataclass(frozen=True)
class DataKey:
    """A ``deployment_key`` row of type data_encryption: the wrapped key and its algorithm."""

    wrapped: str = field(repr=False)
    algorithm: str


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialDecryptError("credential data is not valid base64") from None


def _evp_bytes_to_key(password: bytes, salt: bytes) -> tuple[bytes, bytes]:
    derived = b""
    block = b""
    while len(derived) < _KEY_LEN + _IV_LEN:
        block = hashlib.md5(block + password + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:_KEY_LEN], derived[_KEY_LEN : _KEY_LEN + _IV_LEN]


def _cbc_decrypt(ciphertext_b64: str, passphrase: str) -> bytes:
    raw = _b64(ciphertext_b64)
    if not raw.startswith(SALTED_MAGIC) or len(raw) < 16 + _IV_LEN:
        raise CredentialDecryptError("credential data is not in n8n's salted AES format")
    salt, body = raw[8:16], raw[16:]
    if len(body) % 16:
        raise CredentialDecryptError("credential data has a truncated cipher block")
    key, iv = _evp_bytes_to_key(passphrase.encode("utf-8"), salt)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CredentialDecryptError("credential data does not decrypt with this key") from None


def _cbc_encrypt(plain: bytes, passphrase: str) -> str:
    salt = os.urandom(8)
    key, iv = _evp_bytes_to_key(passphrase.encode("utf-8"), salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(SALTED_MAGIC + salt + body).decode("ascii")


def _gcm_key_and_nonce(hex_key: str, salt: bytes) -> tuple[bytes, bytes]:
    try:
        raw_key = bytes.fromhex(hex_key)
    except ValueError:
        raise CredentialDecryptError("data key is not hexadecimal key material") from None
    if len(raw_key) != _KEY_LEN:
        raise CredentialDecryptError("data key is not 32 bytes long")
    derived = HKDF(
        algorithm=hashes.SHA256(), length=_KEY_LEN + _GCM_NONCE_LEN, salt=salt, info=_GCM_INFO
    ).derive(raw_key)
    return derived[:_KEY_LEN], derived[_KEY_LEN:]


def _gcm_decrypt(ciphertext_b64: str, hex_key: str) -> bytes:
    raw = _b64(ciphertext_b64)
    header = 1 + _GCM_SALT_LEN + _GCM_TAG_LEN
    if len(raw) < header or raw[0] != _GCM_VERSION:
        raise CredentialDecryptError("data is not in n8n's AES-256-GCM format")
    salt = raw[1 : 1 + _GCM_SALT_LEN]
    tag = raw[1 + _GCM_SALT_LEN : header]
    key, nonce = _gcm_key_and_nonce(hex_key, salt)
    try:
        return AESGCM(key).decrypt(nonce, raw[header:] + tag, None)
    except InvalidTag:
        raise CredentialDecryptError("data does not decrypt with this key") from None


def _gcm_encrypt(plain: bytes, hex_key: str) -> str:
    salt = os.urandom(_GCM_SALT_LEN)
    key, nonce = _gcm_key_and_nonce(hex_key, salt)
    sealed = AESGCM(key).encrypt(nonce, plain, None)
    body, tag = sealed[:-_GCM_TAG_LEN], sealed[-_GCM_TAG_LEN:]
    return base64.b64encode(bytes([_GCM_VERSION]) + salt + tag + body).decode("ascii")


def _wrapping_key(encryption_key: str) -> str:
    return hashlib.sha256(encryption_key.encode("utf-8")).hexdigest()


def unwrap_data_key(data_key: DataKey, encryption_key: str) -> str:
    """The raw (hex) data key, unwrapped with the instance's encryption key."""
    return _gcm_decrypt(data_key.wrapped, _wrapping_key(encryption_key)).decode("utf-8")


def wrap_data_key(raw_hex_key: str, encryption_key: str) -> str:
    """Wrap a data key the way n8n stores it in deployment_key (used by tests)."""
    return _gcm_encrypt(raw_hex_key.encode("utf-8"), _wrapping_key(encryption_key))


def decrypt_credential_data(
    ciphertext: str, encryption_key: str, data_keys: Mapping[str, DataKey] | None = None
) -> dict[str, Any]:
    """Decrypt one ``credentials_entity.data`` value (either format) into its JSON object."""
    prefixed = _KEY_ID.match(ciphertext)
    if prefixed:
        key_id, body = prefixed.groups()
        data_key = (data_keys or {}).get(key_id)
        if data_key is None:
            raise CredentialDecryptError(f"data key {key_id} is not in the deployment_key table")
        raw_key = unwrap_data_key(data_key, encryption_key)
        if data_key.algorithm == "aes-256-gcm":
            plain = _gcm_decrypt(body, raw_key)
        elif data_key.algorithm == "aes-256-cbc":
            plain = _cbc_decrypt(body, raw_key)
        else:
            raise CredentialDecryptError(f"data key {key_id} uses unknown {data_key.algorithm}")
    else:
        plain = _cbc_decrypt(ciphertext, encryption_key)
    try:
        value = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        # Not chained: the cause's text could quote decrypted bytes.
        raise CredentialDecryptError("credential data does not decrypt with this key") from None
    if not isinstance(value, dict):
        raise CredentialDecryptError("credential data decrypts to something other than an object")
    return value


def encrypt_credential_data(data: dict[str, Any], encryption_key: str) -> str:
    """Encrypt ``data`` in the legacy format, as n8n does; used to build test fixtures."""
    return _cbc_encrypt(json.dumps(data).encode("utf-8"), encryption_key)


def encrypt_prefixed_credential_data(data: dict[str, Any], key_id: str, raw_hex_key: str) -> str:
    """Encrypt ``data`` in the key-rotation format with an AES-256-GCM data key (tests)."""
    return f"{key_id}:{_gcm_encrypt(json.dumps(data).encode('utf-8'), raw_hex_key)}"
