"""X25519 key handling shared by both channels: loading or generating keys and a checked Diffie-Hellman."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .base import KEY_LENGTH, InvalidKey, NonContributoryKey

__all__ = ["KeyPair", "check_public_key", "diffie_hellman"]


class KeyPair:
    """An X25519 key pair whose secret half never appears in ``repr``."""

    __slots__ = ("_private", "public_key")

    def __init__(self, secret_key: bytes | None = None) -> None:
        if secret_key is None:
            secret_key = secrets.token_bytes(KEY_LENGTH)
        if not isinstance(secret_key, bytes) or len(secret_key) != KEY_LENGTH:
            raise InvalidKey(f"X25519 secret key must be {KEY_LENGTH} bytes")
        self._private = X25519PrivateKey.from_private_bytes(secret_key)
        self.public_key: bytes = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def exchange(self, peer_public_key: bytes) -> bytes:
        """X25519(own secret, peer public); see :func:`diffie_hellman`."""
        return diffie_hellman(self._private, peer_public_key)

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key.hex()})"


def check_public_key(public_key: bytes, what: str = "public key") -> bytes:
    """Return ``public_key`` if it is 32 bytes, else raise :class:`InvalidKey`."""
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != KEY_LENGTH:
        raise InvalidKey(f"{what} must be {KEY_LENGTH} bytes")
    return bytes(public_key)


def diffie_hellman(private: X25519PrivateKey, peer_public_key: bytes) -> bytes:
    """X25519 shared secret; an all-zero result (low-order peer point) raises :class:`NonContributoryKey`."""
    peer = X25519PublicKey.from_public_bytes(check_public_key(peer_public_key, "peer public key"))
    try:
        shared = private.exchange(peer)
    except ValueError:
        # OpenSSL refuses to return the all-zero secret itself.
        raise NonContributoryKey("peer public key gives an all-zero shared secret") from None
    if not any(shared):
        raise NonContributoryKey("peer public key gives an all-zero shared secret")
    return shared
