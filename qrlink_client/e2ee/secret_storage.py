"""Secret storage (SSSS) with the ``m.secret_storage.v1.aes-hmac-sha2`` algorithm (spec "Secret storage").

A *secret storage key* (32 random bytes, shown to the user as a recovery key) encrypts named secrets into the
user's account data. For a secret named ``name``: HKDF-SHA256 (salt = 32 zero bytes, info = ``name``) turns
the key into 64 bytes, an AES-256 key and an HMAC-SHA256 key; the UTF-8 secret is encrypted with AES-CTR under
a random 16-byte IV whose bit 63 is cleared, and the MAC is the HMAC of the ciphertext. The key's description
(``m.secret_storage.key.<id>``) carries the IV and MAC of 32 zero bytes encrypted under the empty name, so a
typed-in key can be checked before anything is decrypted.

Binary fields are written as unpadded base64 and read with or without padding (Element Web writes padding).
"""

from __future__ import annotations

import hmac
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._b64 import InvalidBase64, b64decode, b64encode
from .errors import (
    InvalidKeyMaterial,
    MalformedSecretStorageData,
    SecretMacMismatch,
    SecretNotFound,
    UnsupportedSecretStorageAlgorithm,
    WrongRecoveryKey,
)
from .recovery_key import decode_recovery_key, encode_recovery_key

__all__ = [
    "CROSS_SIGNING_SECRET_NAMES",
    "DEFAULT_KEY_EVENT_TYPE",
    "KEY_EVENT_TYPE_PREFIX",
    "MEGOLM_BACKUP_SECRET_NAME",
    "SECRET_STORAGE_ALGORITHM",
    "EncryptedSecret",
    "SecretStorageKey",
    "key_event_type",
]

SECRET_STORAGE_ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"  # noqa: S105 (an algorithm name, not a secret)
DEFAULT_KEY_EVENT_TYPE = "m.secret_storage.default_key"
KEY_EVENT_TYPE_PREFIX = "m.secret_storage.key."

CROSS_SIGNING_SECRET_NAMES = {
    "master_key": "m.cross_signing.master",
    "self_signing_key": "m.cross_signing.self_signing",
    "user_signing_key": "m.cross_signing.user_signing",
}
"""The secret (and account data type) name of each cross-signing private key, by its ``m.login.secrets``
name."""

MEGOLM_BACKUP_SECRET_NAME = "m.megolm_backup.v1"  # noqa: S105 (a secret's name, not a secret)
"""The secret holding the key backup's Curve25519 private key."""

_KEY_LENGTH = 32
_IV_LENGTH = 16
_MAC_LENGTH = 32
_KEY_ID_ALPHABET = string.ascii_letters + string.digits
_KEY_ID_LENGTH = 32


def key_event_type(key_id: str) -> str:
    """The account data type holding the description of secret storage key ``key_id``."""
    return f"{KEY_EVENT_TYPE_PREFIX}{key_id}"


@dataclass(frozen=True, repr=False)
class EncryptedSecret:
    """One secret encrypted under one secret storage key: ``{"iv", "ciphertext", "mac"}``."""

    iv: bytes
    ciphertext: bytes
    mac: bytes

    def to_json(self) -> dict[str, str]:
        """The JSON object stored under ``encrypted.<key id>`` in the secret's account data."""
        return {
            "iv": b64encode(self.iv),
            "ciphertext": b64encode(self.ciphertext),
            "mac": b64encode(self.mac),
        }

    @classmethod
    def from_json(cls, data: Any) -> EncryptedSecret:
        """Parse the object written by :meth:`to_json`; raises :class:`MalformedSecretStorageData`."""
        if not isinstance(data, Mapping):
            raise MalformedSecretStorageData("an encrypted secret is not a JSON object")
        iv = _field_bytes(data, "iv", _IV_LENGTH)
        mac = _field_bytes(data, "mac", _MAC_LENGTH)
        ciphertext = _field_bytes(data, "ciphertext", None)
        return cls(iv=iv, ciphertext=ciphertext, mac=mac)

    def __repr__(self) -> str:
        return f"EncryptedSecret(ciphertext_length={len(self.ciphertext)})"


class SecretStorageKey:
    """A 32-byte secret storage key and its key id. ``repr`` shows only the id."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != _KEY_LENGTH:
            raise InvalidKeyMaterial(f"a secret storage key is {_KEY_LENGTH} bytes, got {len(key)}")
        self._key = bytes(key)
        self.key_id = key_id

    @classmethod
    def generate(cls, key_id: str | None = None) -> SecretStorageKey:
        """A fresh random key; ``key_id`` defaults to 32 random letters and digits."""
        if key_id is None:
            key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(_KEY_ID_LENGTH))
        return cls(secrets.token_bytes(_KEY_LENGTH), key_id)

    @classmethod
    def from_recovery_key(cls, recovery_key: str, key_id: str) -> SecretStorageKey:
        """Decode a typed-in recovery key (see :func:`~.recovery_key.decode_recovery_key` for its errors)."""
        return cls(decode_recovery_key(recovery_key), key_id)

    def recovery_key(self) -> str:
        """This key as a user-facing recovery key. Secret."""
        return encode_recovery_key(self._key)

    def key_description(self, *, name: str | None = None) -> dict[str, Any]:
        """The ``m.secret_storage.key.<id>`` content: algorithm plus a fresh IV and the MAC that proves this
        key."""
        check = self.encrypt("", bytes(_KEY_LENGTH))
        description: dict[str, Any] = {
            "algorithm": SECRET_STORAGE_ALGORITHM,
            "iv": b64encode(check.iv),
            "mac": b64encode(check.mac),
        }
        if name is not None:
            description["name"] = name
        return description

    def check(self, description: Mapping[str, Any]) -> None:
        """Check this key against a key description.

        Raises :class:`UnsupportedSecretStorageAlgorithm`, :class:`MalformedSecretStorageData`, or
        :class:`WrongRecoveryKey` when the description's MAC was made with another key. A description without
        ``iv`` and ``mac`` cannot be checked and is accepted, as the spec says; decrypting with a wrong key
        then still fails on each secret's own MAC.
        """
        algorithm = description.get("algorithm")
        if algorithm != SECRET_STORAGE_ALGORITHM:
            raise UnsupportedSecretStorageAlgorithm(f"unsupported secret storage algorithm {algorithm!r}")
        if description.get("iv") is None and description.get("mac") is None:
            return
        iv = _field_bytes(description, "iv", _IV_LENGTH)
        expected_mac = _field_bytes(description, "mac", _MAC_LENGTH)
        check = self.encrypt("", bytes(_KEY_LENGTH), iv=iv)
        if not hmac.compare_digest(check.mac, expected_mac):
            raise WrongRecoveryKey(f"the key does not match secret storage key {self.key_id!r}")

    def encrypt(self, secret_name: str, plaintext: bytes, *, iv: bytes | None = None) -> EncryptedSecret:
        """Encrypt ``plaintext`` as secret ``secret_name``; a random IV (bit 63 cleared) unless one is
        given."""
        if iv is None:
            fresh = bytearray(secrets.token_bytes(_IV_LENGTH))
            # Spec: clear bit 63 so that implementations with a 64-bit CTR counter (Android) never wrap it.
            fresh[8] &= 0x7F
            iv = bytes(fresh)
        elif len(iv) != _IV_LENGTH:
            raise InvalidKeyMaterial(f"an AES-CTR IV is {_IV_LENGTH} bytes, got {len(iv)}")
        aes_key, mac_key = self._derive(secret_name)
        encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return EncryptedSecret(iv=iv, ciphertext=ciphertext, mac=_hmac(mac_key, ciphertext))

    def decrypt(self, secret_name: str, encrypted: EncryptedSecret) -> bytes:
        """Check the MAC, then decrypt; raises :class:`SecretMacMismatch` if the MAC does not match."""
        aes_key, mac_key = self._derive(secret_name)
        if not hmac.compare_digest(_hmac(mac_key, encrypted.ciphertext), encrypted.mac):
            raise SecretMacMismatch(f"secret {secret_name!r} failed its MAC check under key {self.key_id!r}")
        decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(encrypted.iv)).decryptor()
        return decryptor.update(encrypted.ciphertext) + decryptor.finalize()

    def encrypt_secret_content(self, secret_name: str, value: str) -> dict[str, Any]:
        """The account data content storing ``value`` as secret ``secret_name`` under this key."""
        encrypted = self.encrypt(secret_name, value.encode("utf-8"))
        return {"encrypted": {self.key_id: encrypted.to_json()}}

    def decrypt_secret_content(self, secret_name: str, content: Mapping[str, Any]) -> str:
        """Decrypt the secret ``secret_name`` from its account data content.

        Raises :class:`SecretNotFound` if it is not encrypted under this key, :class:`SecretMacMismatch`,
        or :class:`MalformedSecretStorageData`.
        """
        encrypted = content.get("encrypted")
        entry = encrypted.get(self.key_id) if isinstance(encrypted, Mapping) else None
        if entry is None:
            raise SecretNotFound(f"secret {secret_name!r} is not encrypted with key {self.key_id!r}")
        plaintext = self.decrypt(secret_name, EncryptedSecret.from_json(entry))
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedSecretStorageData(f"secret {secret_name!r} is not UTF-8 text") from None

    def _derive(self, secret_name: str) -> tuple[bytes, bytes]:
        okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=bytes(32), info=secret_name.encode("utf-8")).derive(
            self._key
        )
        return okm[:32], okm[32:]

    def __repr__(self) -> str:
        return f"SecretStorageKey(key_id={self.key_id!r})"


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def _field_bytes(data: Mapping[str, Any], name: str, length: int | None) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise MalformedSecretStorageData(f"field {name!r} is missing or not a string")
    try:
        raw = b64decode(value)
    except InvalidBase64:
        raise MalformedSecretStorageData(f"field {name!r} is not valid base64") from None
    if length is not None and len(raw) != length:
        raise MalformedSecretStorageData(f"field {name!r} must be {length} bytes, got {len(raw)}")
    return raw
