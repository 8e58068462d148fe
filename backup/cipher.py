"""n8n's credential encryption, reimplemented independently of n8n.

n8n stores each credential's ``data`` as CryptoJS/OpenSSL "Salted__" AES-256-CBC in base64: an
8-byte salt follows the magic, and key and IV come from EVP_BytesToKey (MD5, one round) over the
instance's encryption key and that salt. A wrong key shows as bad padding or as text that is not
JSON; both raise :class:`CredentialDecryptError`, whose message never holds plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SALTED_MAGIC = b"Salted__"
_KEY_LEN = 32
_IV_LEN = 16


class CredentialDecryptError(ValueError):
    """The ciphertext does not decrypt to JSON with this key (wrong key or damaged data)."""


def _evp_bytes_to_key(password: bytes, salt: bytes) -> tuple[bytes, bytes]:
    derived = b""
    block = b""
    while len(derived) < _KEY_LEN + _IV_LEN:
        block = hashlib.md5(block + password + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:_KEY_LEN], derived[_KEY_LEN : _KEY_LEN + _IV_LEN]


def decrypt_credential_data(ciphertext_b64: str, encryption_key: str) -> dict[str, Any]:
    """Decrypt one ``credentials_entity.data`` value and parse it as a JSON object."""
    try:
        raw = base64.b64decode(ciphertext_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CredentialDecryptError("credential data is not valid base64") from exc
    if not raw.startswith(SALTED_MAGIC) or len(raw) < 16 + _IV_LEN:
        raise CredentialDecryptError("credential data is not in n8n's salted AES format")
    salt, body = raw[8:16], raw[16:]
    if len(body) % 16:
        raise CredentialDecryptError("credential data has a truncated cipher block")
    key, iv = _evp_bytes_to_key(encryption_key.encode("utf-8"), salt)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        value = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        # Deliberately not chained: the cause's text could quote decrypted bytes.
        raise CredentialDecryptError("credential data does not decrypt with this key") from None
    if not isinstance(value, dict):
        raise CredentialDecryptError("credential data decrypts to something other than an object")
    return value


def encrypt_credential_data(data: dict[str, Any], encryption_key: str) -> str:
    """Encrypt ``data`` the way n8n does; used to build test fixtures and by round-trip checks."""
    salt = os.urandom(8)
    key, iv = _evp_bytes_to_key(encryption_key.encode("utf-8"), salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(data).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(SALTED_MAGIC + salt + body).decode("ascii")
