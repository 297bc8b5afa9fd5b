"""The new device's own Olm identity (vodozemac ``Account``) and its ``/keys/upload`` body.

After ``m.login.secrets`` the new device publishes, in a *single* ``POST /keys/upload`` (docs/protocol.md, "Order"),
its ``device_keys`` signed by its own Ed25519 key **and** by the self-signing key, plus signed one-time keys.
Uploading them together means the device is never visible to other users without its cross-signing signature.
"""

from __future__ import annotations

from typing import Any

import vodozemac

from .._b64 import b64decode
from .cross_signing import CrossSigningKeys
from .errors import InvalidKeyMaterial
from .signing import ed25519_key_id, sign_json

__all__ = ["DEVICE_ALGORITHMS", "PICKLE_KEY_LENGTH", "OlmDevice"]

DEVICE_ALGORITHMS = ("m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2")
"""The encryption algorithms the device advertises in ``device_keys.algorithms``."""

PICKLE_KEY_LENGTH = 32
"""vodozemac pickles are encrypted with a 32-byte key."""


class OlmDevice:
    """An Olm account plus the device id it is published under. ``repr`` shows public identity keys only."""

    __slots__ = ("_account", "device_id")

    def __init__(self, account: vodozemac.Account, device_id: str) -> None:
        self._account = account
        self.device_id = device_id

    @classmethod
    def generate(cls, device_id: str | None = None) -> OlmDevice:
        """A fresh account. Without ``device_id`` the device id is the unpadded base64 Curve25519 identity
        key, as rust-sdk chooses it for QR login (it may contain ``/`` and ``+``)."""
        account = vodozemac.Account()
        return cls(account, device_id if device_id is not None else account.curve25519_key.to_base64())

    @classmethod
    def from_pickle(cls, pickle: str, pickle_key: bytes, *, device_id: str) -> OlmDevice:
        """Restore an account pickled by :meth:`pickle` (raises :class:`InvalidKeyMaterial` on a wrong
        key)."""
        _check_pickle_key(pickle_key)
        try:
            account = vodozemac.Account.from_pickle(pickle, pickle_key)
        except vodozemac.PickleException:
            raise InvalidKeyMaterial("the account pickle cannot be decrypted with this pickle key") from None
        return cls(account, device_id)

    def pickle(self, pickle_key: bytes) -> str:
        """The account encrypted with the caller's 32-byte ``pickle_key`` (vodozemac's pickle format)."""
        _check_pickle_key(pickle_key)
        return self._account.pickle(pickle_key)

    @property
    def account(self) -> vodozemac.Account:
        """The underlying vodozemac account (for Olm sessions once the device is running)."""
        return self._account

    @property
    def ed25519_key(self) -> str:
        """The device's unpadded base64 Ed25519 fingerprint key."""
        return self._account.ed25519_key.to_base64()

    @property
    def curve25519_key(self) -> str:
        """The device's unpadded base64 Curve25519 identity key."""
        return self._account.curve25519_key.to_base64()

    @property
    def key_id(self) -> str:
        """``ed25519:<device id>``, the key id of the device's own signatures."""
        return ed25519_key_id(self.device_id)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` by the device key (a :class:`~.signing.Signer`)."""
        return b64decode(self._account.sign(message).to_base64())

    def device_keys(self, user_id: str, cross_signing: CrossSigningKeys | None = None) -> dict[str, Any]:
        """The signed ``device_keys`` object; also signed by the self-signing key when ``cross_signing`` is
        given."""
        unsigned_keys: dict[str, Any] = {
            "user_id": user_id,
            "device_id": self.device_id,
            "algorithms": list(DEVICE_ALGORITHMS),
            "keys": {
                f"curve25519:{self.device_id}": self.curve25519_key,
                f"ed25519:{self.device_id}": self.ed25519_key,
            },
        }
        signed = sign_json(unsigned_keys, signer_id=user_id, key_id=self.key_id, key=self)
        if cross_signing is not None:
            signed = cross_signing.sign_device_keys(signed, user_id)
        return signed

    def generate_one_time_keys(self, user_id: str, count: int) -> dict[str, Any]:
        """Generate ``count`` one-time keys and return the unpublished ones as signed ``signed_curve25519``
        objects.

        Call :meth:`mark_keys_as_published` once the homeserver has accepted them.
        """
        limit = self._account.max_number_of_one_time_keys
        if not 0 <= count <= limit:
            raise ValueError(f"one-time key count must be between 0 and {limit}, got {count}")
        if count:
            self._account.generate_one_time_keys(count)
        one_time_keys: dict[str, Any] = {}
        for key_id, public_key in sorted(self._account.one_time_keys.items()):
            key_object = {"key": public_key.to_base64()}
            one_time_keys[f"signed_curve25519:{key_id}"] = sign_json(
                key_object, signer_id=user_id, key_id=self.key_id, key=self
            )
        return one_time_keys

    def keys_upload_body(
        self, user_id: str, cross_signing: CrossSigningKeys | None = None, *, one_time_keys: int = 50
    ) -> dict[str, Any]:
        """The body of the single ``POST /keys/upload``: device keys (SSK-signed if given) and one-time
        keys."""
        body: dict[str, Any] = {"device_keys": self.device_keys(user_id, cross_signing)}
        otks = self.generate_one_time_keys(user_id, one_time_keys)
        if otks:
            body["one_time_keys"] = otks
        return body

    def mark_keys_as_published(self) -> None:
        """Forget the one-time keys as "unpublished" after a successful upload (pickle afterwards)."""
        self._account.mark_keys_as_published()

    def __repr__(self) -> str:
        return (
            f"OlmDevice(device_id={self.device_id!r}, curve25519={self.curve25519_key!r}, ed25519={self.ed25519_key!r})"
        )


def _check_pickle_key(pickle_key: bytes) -> None:
    if len(pickle_key) != PICKLE_KEY_LENGTH:
        raise InvalidKeyMaterial(f"a pickle key is {PICKLE_KEY_LENGTH} bytes, got {len(pickle_key)}")
