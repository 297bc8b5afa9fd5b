"""Cross-signing keys: the master, self-signing (SSK) and user-signing (USK) Ed25519 keys of a user.

The master key signs the SSK and USK; the SSK signs the user's own devices; the USK signs other users' master
keys. ``m.login.secrets`` carries the three private seeds, and the new device proves they are the real ones by
deriving the public keys and comparing them with what ``/keys/query`` publishes for the user (``master_keys``,
``self_signing_keys``, ``user_signing_keys``; each key listed as ``"ed25519:<public>": "<public>"``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._b64 import InvalidBase64, b64decode
from .errors import SecretsMismatch
from .signing import Ed25519SigningKey, ed25519_key_id, sign_json

__all__ = [
    "CROSS_SIGNING_KEY_NAMES",
    "CrossSigningKeys",
    "check_cross_signing_keys",
    "published_cross_signing_key",
]

CROSS_SIGNING_KEY_NAMES = ("master_key", "self_signing_key", "user_signing_key")
"""The field names used by ``m.login.secrets`` and ``/keys/device_signing/upload``, in that order."""

_USAGE = {"master_key": "master", "self_signing_key": "self_signing", "user_signing_key": "user_signing"}
# /keys/query lists each kind of key under its own plural field.
_QUERY_FIELD = {
    "master_key": "master_keys",
    "self_signing_key": "self_signing_keys",
    "user_signing_key": "user_signing_keys",
}


@dataclass(frozen=True, repr=False)
class CrossSigningKeys:
    """The three private cross-signing keys. ``repr`` shows only public keys."""

    master_key: Ed25519SigningKey
    self_signing_key: Ed25519SigningKey
    user_signing_key: Ed25519SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        """Three fresh random keys (for setting up a new user)."""
        return cls(Ed25519SigningKey.generate(), Ed25519SigningKey.generate(), Ed25519SigningKey.generate())

    def by_name(self, name: str) -> Ed25519SigningKey:
        """The key called ``name`` (one of :data:`CROSS_SIGNING_KEY_NAMES`)."""
        if name not in _USAGE:
            raise KeyError(name)
        key: Ed25519SigningKey = getattr(self, name)
        return key

    def key_object(self, name: str, user_id: str) -> dict[str, Any]:
        """The public key object for ``name`` (``user_id``, ``usage``, ``keys``), unsigned."""
        key = self.by_name(name)
        return {
            "user_id": user_id,
            "usage": [_USAGE[name]],
            "keys": {key.key_id: key.public_key_base64},
        }

    def device_signing_upload_body(self, user_id: str) -> dict[str, Any]:
        """The body of ``POST /keys/device_signing/upload`` (without ``auth``): SSK and USK signed by the
        master key."""
        master = self.master_key
        body: dict[str, Any] = {"master_key": self.key_object("master_key", user_id)}
        for name in ("self_signing_key", "user_signing_key"):
            body[name] = sign_json(self.key_object(name, user_id), signer_id=user_id, key_id=master.key_id, key=master)
        return body

    def sign_device_keys(self, device_keys: Mapping[str, Any], user_id: str) -> dict[str, Any]:
        """A copy of ``device_keys`` with the self-signing key's signature added."""
        ssk = self.self_signing_key
        return sign_json(device_keys, signer_id=user_id, key_id=ssk.key_id, key=ssk)

    def __repr__(self) -> str:
        return (
            f"CrossSigningKeys(master_key={self.master_key.public_key_base64!r}, "
            f"self_signing_key={self.self_signing_key.public_key_base64!r}, "
            f"user_signing_key={self.user_signing_key.public_key_base64!r})"
        )


def published_cross_signing_key(keys_query_response: Mapping[str, Any], user_id: str, name: str) -> bytes | None:
    """The raw public key the homeserver publishes as ``name`` for ``user_id``, or ``None`` if it lists none.

    Raises :class:`SecretsMismatch` if the published object is malformed (several keys, a key id that does not
    match its value, bad base64), since such a key cannot be what the bundle holds.
    """
    per_user = keys_query_response.get(_QUERY_FIELD[name])
    key_object = per_user.get(user_id) if isinstance(per_user, Mapping) else None
    if key_object is None:
        return None
    keys = key_object.get("keys") if isinstance(key_object, Mapping) else None
    if not isinstance(keys, Mapping) or len(keys) != 1:
        raise SecretsMismatch(name, "the published key object does not hold exactly one key")
    ((key_id, value),) = keys.items()
    if not isinstance(value, str) or key_id != ed25519_key_id(value):
        raise SecretsMismatch(name, "the published key id does not match its ed25519 public key")
    if isinstance(key_object.get("user_id"), str) and key_object["user_id"] != user_id:
        raise SecretsMismatch(name, "the published key belongs to another user")
    try:
        return b64decode(value)
    except InvalidBase64:
        raise SecretsMismatch(name, "the published public key is not valid base64") from None


def check_cross_signing_keys(keys: CrossSigningKeys, keys_query_response: Mapping[str, Any], user_id: str) -> None:
    """Check all three private keys against the public keys in a ``/keys/query`` response for ``user_id``.

    Raises :class:`SecretsMismatch` naming the first key that is unpublished or differs.
    """
    for name in CROSS_SIGNING_KEY_NAMES:
        published = published_cross_signing_key(keys_query_response, user_id, name)
        if published is None:
            raise SecretsMismatch(name, "the homeserver publishes no such key for the user")
        if not hmac.compare_digest(published, keys.by_name(name).public_key):
            raise SecretsMismatch(name, "the private key does not match the public key the homeserver publishes")
