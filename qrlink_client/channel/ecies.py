"""Gen-1 secure channel: vodozemac's ECIES as shipped (docs/protocol.md, "Gen-1 channel").

X25519; HKDF-SHA512 with no salt over the raw shared secret, one expansion per info string; ChaCha20-Poly1305
with no AAD; one little-endian counter per direction, each starting at 0 (LoginInitiate is S's message 0,
LoginOk is G's message 0). The 2024 MSC text says HKDF-SHA256 and a LoginOk nonce of 1; every shipping client
does what is implemented here.

Wire format: LoginInitiateMessage = ``b64(ct) "|" b64(Sp)``; every other message = ``b64(ct)``; base64 is
standard and unpadded (padding accepted on input).
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._b64 import InvalidBase64, b64decode, b64encode
from ._state import CHECK_CODE_STATES, HandshakeChannel, Operation, transition
from ._x25519 import check_public_key
from .base import (
    KEY_LENGTH,
    LOGIN_INITIATE,
    LOGIN_OK,
    ChannelStateError,
    CheckCode,
    DecryptionError,
    HandshakeError,
    MessageDecodeError,
    Role,
)

__all__ = ["EciesChannel"]

APP_INFO = "MATRIX_QR_CODE_LOGIN"
"""vodozemac's default application info; the prefix of every HKDF info string."""

_TAG_LENGTH = 16
_NONCE_LENGTH = 12


class _EciesKeys:
    """The keys derived from one shared secret. Never printed."""

    __slots__ = ("check_bytes", "enc_key_g", "enc_key_s")

    def __init__(self, enc_key_s: bytes, enc_key_g: bytes, check_bytes: bytes) -> None:
        self.enc_key_s = enc_key_s
        self.enc_key_g = enc_key_g
        self.check_bytes = check_bytes

    def __repr__(self) -> str:
        return "_EciesKeys(<hidden>)"


def _hkdf_sha512(shared_secret: bytes, info: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=length, salt=None, info=info.encode("ascii")).derive(shared_secret)


def _derive_keys(shared_secret: bytes, generator_key: bytes, scanner_key: bytes) -> _EciesKeys:
    """Derive EncKey_S, EncKey_G and the check bytes; keys appear in the info strings as unpadded base64."""
    keys = f"|{b64encode(generator_key)}|{b64encode(scanner_key)}"
    return _EciesKeys(
        enc_key_s=_hkdf_sha512(shared_secret, f"{APP_INFO}_ENCKEY_S{keys}", 32),
        enc_key_g=_hkdf_sha512(shared_secret, f"{APP_INFO}_ENCKEY_G{keys}", 32),
        check_bytes=_hkdf_sha512(shared_secret, f"{APP_INFO}_CHECKCODE{keys}", 2),
    )


def _nonce(counter: int) -> bytes:
    # vodozemac: the low 12 bytes of the counter, little-endian.
    return counter.to_bytes(_NONCE_LENGTH, "little")


def _decode_ciphertext(text: str) -> bytes:
    try:
        ciphertext = b64decode(text)
    except InvalidBase64 as exc:
        raise MessageDecodeError(f"message is not valid base64: {exc}") from None
    if len(ciphertext) < _TAG_LENGTH:
        raise MessageDecodeError("message is too short to hold an authentication tag")
    return ciphertext


class EciesChannel(HandshakeChannel):
    """The Gen-1 (MSC4108 2024) secure channel. Build one with :meth:`generator` or :meth:`scanner`.

    Implements :class:`~qrlink_client.channel.base.SecureChannel`; ``sequence_token`` arguments are accepted
    and ignored, because Gen-1 binds nothing to the rendezvous.
    """

    def __init__(self, role: Role, secret_key: bytes | None = None) -> None:
        super().__init__(role, secret_key)
        self._keys: _EciesKeys | None = None
        self._send_counter = 0
        self._recv_counter = 0

    @classmethod
    def generator(cls, secret_key: bytes | None = None) -> EciesChannel:
        """G's channel; its public key goes into the QR code. ``secret_key`` fixes the key (vectors)."""
        return cls(Role.GENERATOR, secret_key)

    @classmethod
    def scanner(cls, secret_key: bytes | None = None) -> EciesChannel:
        """S's channel; ``secret_key`` fixes S's ephemeral key (tests, vectors)."""
        return cls(Role.SCANNER, secret_key)

    @property
    def check_code(self) -> CheckCode:
        """The Gen-1 check code (may start with 0); G has it after accept_initiate, S after accept_ok."""
        if self._keys is None or self._state not in CHECK_CODE_STATES[self._role]:
            raise ChannelStateError("the check code is not available yet")
        return CheckCode.allow_leading_zero(self._keys.check_bytes)

    # --- handshake ------------------------------------------------------------------------------------------

    def initiate(self, peer_public_key: bytes, *, sequence_token: str | None = None) -> str:
        """S: derive the keys with G's public key and return LoginInitiateMessage."""
        next_state = transition(self._role, Operation.INITIATE, self._state)
        generator_key = check_public_key(peer_public_key, "generator public key")
        keys = _derive_keys(self._key_pair.exchange(generator_key), generator_key, self.public_key)
        ciphertext = ChaCha20Poly1305(keys.enc_key_s).encrypt(_nonce(0), LOGIN_INITIATE, None)
        self._keys, self._peer_public_key = keys, generator_key
        self._send_counter, self._recv_counter = 1, 0
        self._state = next_state
        return f"{b64encode(ciphertext)}|{b64encode(self.public_key)}"

    def accept_initiate(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """G: check LoginInitiateMessage and return S's public key.

        Raises :class:`MessageDecodeError`, :class:`NonContributoryKey`, :class:`DecryptionError` or
        :class:`HandshakeError`; on any of them the channel stays as it was.
        """
        next_state = transition(self._role, Operation.ACCEPT_INITIATE, self._state)
        ciphertext_text, separator, key_text = message.partition("|")
        if not separator:
            raise MessageDecodeError("LoginInitiateMessage lacks the '|' separator")
        ciphertext = _decode_ciphertext(ciphertext_text)
        try:
            scanner_key = b64decode(key_text)
        except InvalidBase64 as exc:
            raise MessageDecodeError(f"LoginInitiateMessage key is not valid base64: {exc}") from None
        if len(scanner_key) != KEY_LENGTH:
            raise MessageDecodeError(f"LoginInitiateMessage key is not {KEY_LENGTH} bytes")
        keys = _derive_keys(self._key_pair.exchange(scanner_key), self.public_key, scanner_key)
        try:
            plaintext = ChaCha20Poly1305(keys.enc_key_s).decrypt(_nonce(0), ciphertext, None)
        except InvalidTag:
            raise DecryptionError("LoginInitiateMessage failed authentication") from None
        if not hmac.compare_digest(plaintext, LOGIN_INITIATE):
            raise HandshakeError("LoginInitiateMessage does not hold the initiate string")
        self._keys, self._peer_public_key = keys, scanner_key
        self._send_counter, self._recv_counter = 0, 1
        self._state = next_state
        return scanner_key

    def ok_message(self, *, sequence_token: str | None = None, response_nonce: bytes | None = None) -> str:
        """G: return LoginOkMessage (G's message 0). ``response_nonce`` is a Gen-2 notion and is ignored."""
        next_state = transition(self._role, Operation.OK_MESSAGE, self._state)
        message = self._seal(LOGIN_OK)
        self._state = next_state
        return message

    def accept_ok(self, message: str, *, sequence_token: str | None = None) -> None:
        """S: check LoginOkMessage; afterwards the check code may be shown."""
        next_state = transition(self._role, Operation.ACCEPT_OK, self._state)
        if not hmac.compare_digest(self._open_next(message), LOGIN_OK):
            raise HandshakeError("LoginOkMessage does not hold the OK string")
        self._recv_counter += 1
        self._state = next_state

    # --- messages -------------------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, *, sequence_token: str | None = None) -> str:
        """Seal ``plaintext`` with the next own nonce; returns the message text."""
        transition(self._role, Operation.ENCRYPT, self._state)
        return self._seal(plaintext)

    def decrypt(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """Open the peer's next message. Replays and skipped messages fail with :class:`DecryptionError`."""
        transition(self._role, Operation.DECRYPT, self._state)
        plaintext = self._open_next(message)
        # Advance only on success, so a forged message cannot desynchronise the channel.
        self._recv_counter += 1
        return plaintext

    def _own_and_peer_keys(self) -> tuple[bytes, bytes]:
        assert self._keys is not None  # guaranteed by the state machine
        if self._role is Role.SCANNER:
            return self._keys.enc_key_s, self._keys.enc_key_g
        return self._keys.enc_key_g, self._keys.enc_key_s

    def _seal(self, plaintext: bytes) -> str:
        own_key, _ = self._own_and_peer_keys()
        ciphertext = ChaCha20Poly1305(own_key).encrypt(_nonce(self._send_counter), bytes(plaintext), None)
        self._send_counter += 1
        return b64encode(ciphertext)

    def _open_next(self, message: str) -> bytes:
        """Open ``message`` with the peer's next nonce; the caller advances the counter once it accepts it."""
        _, peer_key = self._own_and_peer_keys()
        ciphertext = _decode_ciphertext(message)
        try:
            return ChaCha20Poly1305(peer_key).decrypt(_nonce(self._recv_counter), ciphertext, None)
        except InvalidTag:
            raise DecryptionError("message failed authentication (tampered, replayed or out of order)") from None

    def __repr__(self) -> str:
        return (
            f"EciesChannel(role={self._role.name}, state={self._state.value}, public_key={b64encode(self.public_key)})"
        )
