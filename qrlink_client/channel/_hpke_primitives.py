"""RFC 9180 HPKE, base mode only, for the one suite MSC4388 uses: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305 (KEM 0x0020, KDF 0x0001, AEAD 0x0003). Hazardous: use :mod:`qrlink_client.channel.hpke`.

Built here on ``cryptography`` primitives because no maintained Python package offers all of: stateful
contexts with sequence numbers that advance only on a successful Open, the secret exporter, an injectable KEM
ephemeral key (for test vectors), and a context built from a raw key and base nonce (the OHTTP-style response
context). ``cryptography``'s own HPKE is single-shot only; pyhpke advances its sequence number before Open
succeeds and has no public way to build a context from raw key material. The module is proven against RFC 9180
appendix A.2.1.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ._x25519 import KeyPair, check_public_key
from .base import ChannelStateError, DecryptionError

__all__ = [
    "AEAD_KEY_LENGTH",
    "AEAD_NONCE_LENGTH",
    "Context",
    "hkdf_expand",
    "hkdf_extract",
    "setup_base_recipient",
    "setup_base_sender",
]

KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0003
MODE_BASE = 0x00

AEAD_KEY_LENGTH = 32  # Nk
AEAD_NONCE_LENGTH = 12  # Nn
HASH_LENGTH = 32  # Nh, and Nsecret of the KEM
_MAX_SEQUENCE = (1 << (8 * AEAD_NONCE_LENGTH)) - 1

_VERSION_LABEL = b"HPKE-v1"
_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE_ID = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869); an empty salt equals HashLen zero bytes under HMAC."""
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869)."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract(salt, _VERSION_LABEL + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + _VERSION_LABEL + suite_id + label + info
    return hkdf_expand(prk, labeled_info, length)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, HASH_LENGTH)


class Context:
    """An HPKE encryption context: AEAD key, base nonce, sequence number and (optionally) exporter secret.

    One context only seals or only opens, as in RFC 9180 (a sender context seals, a recipient context opens).
    The sequence number advances after every Seal and after every *successful* Open, so a forged or replayed
    message cannot desynchronise the peers.
    """

    __slots__ = ("_aead", "_base_nonce", "_exporter_secret", "_sequence")

    def __init__(self, key: bytes, base_nonce: bytes, exporter_secret: bytes | None) -> None:
        if len(key) != AEAD_KEY_LENGTH or len(base_nonce) != AEAD_NONCE_LENGTH:
            raise ValueError("HPKE context needs a 32-byte key and a 12-byte base nonce")
        self._aead = ChaCha20Poly1305(key)
        self._base_nonce = int.from_bytes(base_nonce, "big")
        self._exporter_secret = exporter_secret
        self._sequence = 0

    @property
    def sequence(self) -> int:
        """The sequence number the next Seal/Open will use."""
        return self._sequence

    def _nonce(self) -> bytes:
        if self._sequence > _MAX_SEQUENCE:
            raise ChannelStateError("HPKE message limit reached")
        return (self._base_nonce ^ self._sequence).to_bytes(AEAD_NONCE_LENGTH, "big")

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """Encrypt with the current sequence number, then advance it."""
        ciphertext = self._aead.encrypt(self._nonce(), plaintext, aad)
        self._sequence += 1
        return ciphertext

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt with the current sequence number, advancing it only on success.

        Raises :class:`DecryptionError` if authentication fails.
        """
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, aad)
        except InvalidTag:
            raise DecryptionError(
                "message failed authentication (tampered, replayed, out of order or other AAD)"
            ) from None
        self._sequence += 1
        return plaintext

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 Export: ``LabeledExpand(exporter_secret, "sec", exporter_context, L)``."""
        if self._exporter_secret is None:
            # The response context has no exporter secret of its own; exporting from it is a programming
            # error.
            raise ChannelStateError("this context has no exporter")
        return _labeled_expand(_HPKE_SUITE_ID, self._exporter_secret, b"sec", exporter_context, length)

    def __repr__(self) -> str:
        return f"Context(sequence={self._sequence})"


class _Schedule:
    """The key schedule's outputs. Exposed to the test-vector suite only through :func:`key_schedule_base`."""

    __slots__ = ("base_nonce", "exporter_secret", "key")

    def __init__(self, key: bytes, base_nonce: bytes, exporter_secret: bytes) -> None:
        self.key, self.base_nonce, self.exporter_secret = key, base_nonce, exporter_secret

    def __repr__(self) -> str:
        return "_Schedule(<hidden>)"

    def context(self) -> Context:
        return Context(self.key, self.base_nonce, self.exporter_secret)


def key_schedule_base(shared_secret: bytes, info: bytes) -> _Schedule:
    """RFC 9180 §5.1 KeySchedule for mode_base (empty PSK and PSK id)."""
    psk_id_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"info_hash", info)
    schedule_context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(_HPKE_SUITE_ID, shared_secret, b"secret", b"")
    return _Schedule(
        key=_labeled_expand(_HPKE_SUITE_ID, secret, b"key", schedule_context, AEAD_KEY_LENGTH),
        base_nonce=_labeled_expand(_HPKE_SUITE_ID, secret, b"base_nonce", schedule_context, AEAD_NONCE_LENGTH),
        exporter_secret=_labeled_expand(_HPKE_SUITE_ID, secret, b"exp", schedule_context, HASH_LENGTH),
    )


def encap(recipient_public_key: bytes, ephemeral: KeyPair) -> tuple[bytes, bytes]:
    """DHKEM(X25519) Encap with a given ephemeral key pair; returns ``(shared_secret, enc)``."""
    recipient_public_key = check_public_key(recipient_public_key, "recipient public key")
    dh = ephemeral.exchange(recipient_public_key)
    enc = ephemeral.public_key
    return _extract_and_expand(dh, enc + recipient_public_key), enc


def decap(enc: bytes, recipient: KeyPair) -> bytes:
    """DHKEM(X25519) Decap; returns the shared secret."""
    dh = recipient.exchange(check_public_key(enc, "enc"))
    return _extract_and_expand(dh, enc + recipient.public_key)


def setup_base_sender(recipient_public_key: bytes, info: bytes, ephemeral: KeyPair) -> tuple[bytes, Context]:
    """SetupBaseS: returns ``(enc, sender context)``; ``enc`` is the ephemeral public key."""
    shared_secret, enc = encap(recipient_public_key, ephemeral)
    return enc, key_schedule_base(shared_secret, info).context()


def setup_base_recipient(enc: bytes, recipient: KeyPair, info: bytes) -> Context:
    """SetupBaseR: returns the recipient context for ``enc``."""
    return key_schedule_base(decap(enc, recipient), info).context()
