"""The base of the 32-byte private keys (backup key, signing keys): a secret that never shows in ``repr``.

The private bytes leave a key only through the subclass's explicitly named export methods; ``repr`` and error
messages carry the public key or the length, never the secret.
"""

from __future__ import annotations

import secrets
from typing import ClassVar, Self

from .._b64 import InvalidBase64, b64decode, b64encode
from .errors import InvalidKeyMaterial

__all__ = ["KEY_LENGTH", "PrivateKey32"]

KEY_LENGTH = 32
"""Length of the private key and of the public key."""


class PrivateKey32:
    """A 32-byte private key and its 32-byte public key; equal and hashed by the public key.

    A subclass names its private bytes for error messages (:attr:`_KEY_KIND`), derives the public key
    (:meth:`_load`) and exports the secret under a name that makes the export explicit.
    """

    __slots__ = ("_public", "_secret")

    #: How error messages name the private bytes ("an Ed25519 seed"); never the bytes themselves.
    _KEY_KIND: ClassVar[str]

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_LENGTH:
            raise InvalidKeyMaterial(f"{self._KEY_KIND} is {KEY_LENGTH} bytes, got {len(secret)}")
        self._secret = bytes(secret)
        self._public = self._load(self._secret)

    def _load(self, secret: bytes) -> bytes:
        """Set up what the subclass needs from ``secret`` and return the 32-byte public key."""
        raise NotImplementedError

    @classmethod
    def generate(cls) -> Self:
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(KEY_LENGTH))

    @classmethod
    def from_base64(cls, secret_b64: str) -> Self:
        """Load a key from the (unpadded or padded) base64 of its 32 private bytes."""
        try:
            return cls(b64decode(secret_b64))
        except InvalidBase64:
            # The key's own error type; like the decoder's, its message never echoes the (secret) input.
            raise InvalidKeyMaterial(f"{cls._KEY_KIND} is not valid base64") from None

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key."""
        return self._public

    @property
    def public_key_base64(self) -> str:
        """The unpadded base64 public key."""
        return b64encode(self._public)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(public_key={self.public_key_base64!r})"
