"""Ed25519 signing and verification of JSON objects (spec appendix "Signing JSON").

An object is signed over the canonical JSON of itself *without* its ``signatures`` and ``unsigned`` members;
the unpadded-base64 signature goes to ``signatures[<signer>][<key id>]`` (signer = user id, key id =
``ed25519:<device id>`` for a device key or ``ed25519:<unpadded base64 public key>`` for a cross-signing key).
Existing signatures and ``unsigned`` data are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._b64 import InvalidBase64, b64decode, b64encode
from ._keys import KEY_LENGTH, PrivateKey32
from .canonical_json import canonical_json
from .errors import InvalidKeyMaterial, InvalidSignature

__all__ = [
    "ED25519_KEY_LENGTH",
    "Ed25519SigningKey",
    "Signer",
    "ed25519_key_id",
    "sign_json",
    "signable_bytes",
    "verify_json",
]

ED25519_KEY_LENGTH = KEY_LENGTH
"""Length of an Ed25519 private seed and of a public key."""

_UNSIGNED_MEMBERS = ("signatures", "unsigned")


class Signer(Protocol):
    """Anything that holds an Ed25519 private key and can sign bytes with it."""

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


def ed25519_key_id(name: str) -> str:
    """The signing key identifier ``ed25519:<name>`` (``name`` is a device id or a base64 public key)."""
    return f"ed25519:{name}"


class Ed25519SigningKey(PrivateKey32):
    """An Ed25519 private key kept as its 32-byte seed (the form ``m.login.secrets`` and SSSS carry).

    ``repr`` shows only the public key; the seed leaves the object only through :meth:`seed` /
    :meth:`seed_base64`, whose names make the export explicit. The unpadded base64 public key
    (:attr:`public_key_base64`) is also the key's id in cross-signing ``keys`` maps.
    """

    __slots__ = ("_signer",)

    _KEY_KIND = "an Ed25519 seed"

    def _load(self, secret: bytes) -> bytes:
        self._signer = Ed25519PrivateKey.from_private_bytes(secret)
        return self._signer.public_key().public_bytes_raw()

    def seed(self) -> bytes:
        """The 32-byte private seed. Secret."""
        return self._secret

    def seed_base64(self) -> str:
        """The unpadded base64 of the private seed, as ``m.login.secrets`` and SSSS store it. Secret."""
        return b64encode(self._secret)

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``, the key id of a cross-signing key."""
        return ed25519_key_id(self.public_key_base64)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._signer.sign(message)


def signable_bytes(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature over ``obj`` covers: canonical JSON without ``signatures`` and ``unsigned``."""
    return canonical_json({key: value for key, value in obj.items() if key not in _UNSIGNED_MEMBERS})


def sign_json(obj: Mapping[str, Any], *, signer_id: str, key_id: str, key: Signer) -> dict[str, Any]:
    """Return a copy of ``obj`` with ``signatures[signer_id][key_id]`` set to ``key``'s signature.

    ``obj`` itself is not modified; other signatures and ``unsigned`` are carried over.
    """
    signature = b64encode(key.sign(signable_bytes(obj)))
    signed = dict(obj)
    existing = obj.get("signatures") or {}
    signatures: dict[str, dict[str, str]] = {user: dict(per_key) for user, per_key in existing.items()}
    signatures.setdefault(signer_id, {})[key_id] = signature
    signed["signatures"] = signatures
    return signed


def verify_json(obj: Mapping[str, Any], *, signer_id: str, key_id: str, public_key: str | bytes) -> None:
    """Check that ``obj`` carries a valid signature by ``public_key`` under ``signatures[signer_id][key_id]``.

    ``public_key`` is raw 32 bytes or its unpadded base64. Raises :class:`InvalidSignature` if the signature
    is missing, not base64, or does not verify; :class:`InvalidKeyMaterial` if the public key is malformed.
    """
    raw_key = _public_key_bytes(public_key)
    signatures = obj.get("signatures")
    per_signer = signatures.get(signer_id) if isinstance(signatures, Mapping) else None
    signature_b64 = per_signer.get(key_id) if isinstance(per_signer, Mapping) else None
    if not isinstance(signature_b64, str):
        raise InvalidSignature(f"no signature by {signer_id} with {key_id}")
    try:
        signature = b64decode(signature_b64)
    except InvalidBase64:
        raise InvalidSignature(f"signature by {signer_id} with {key_id} is not valid base64") from None
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, signable_bytes(obj))
    except _CryptographyInvalidSignature:
        raise InvalidSignature(f"signature by {signer_id} with {key_id} does not verify") from None


def _public_key_bytes(public_key: str | bytes) -> bytes:
    if isinstance(public_key, str):
        try:
            public_key = b64decode(public_key)
        except InvalidBase64:
            raise InvalidKeyMaterial("an Ed25519 public key is not valid base64") from None
    if len(public_key) != ED25519_KEY_LENGTH:
        raise InvalidKeyMaterial(f"an Ed25519 public key is {ED25519_KEY_LENGTH} bytes, got {len(public_key)}")
    return public_key
