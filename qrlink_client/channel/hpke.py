"""Gen-2 secure channel: HPKE per MSC4388 (docs/protocol.md, "Gen-2 channel: HPKE" and "Profiles").

RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, info
``MATRIX_QR_CODE_LOGIN``.

* S runs SetupBaseS to G's key from the QR code; S's key pair *is* the KEM ephemeral, so ``enc == Sp``.
  LoginInitiateMessage = ``b64(Sp ‖ Seal(aad, "MATRIX_QR_CODE_LOGIN_INITIATE"))`` (S's sequence 0).
* G runs SetupBaseR, then builds an OHTTP-style (RFC 9458 §4.4) response context from
  ``Export(RESP_LABEL, 32)``, salt ``Sp ‖ response_nonce`` (32 random bytes), HKDF-SHA256
  ``"key"``/``"nonce"``. LoginOkMessage = ``b64(response_nonce ‖ Seal(aad, "MATRIX_QR_CODE_LOGIN_OK"))`` (G's
  sequence 0).
* Every later message is ``b64(ciphertext)``; S seals with its sender context, G with the response context.
* Every Seal/Open binds an AAD of the length-prefixed base URL, rendezvous id and sequence token. The caller
  passes the sequence token: the sender the token it puts in its PUT, the receiver the token that was current
  before the peer's write (read before receiving; under ping-pong, the one its own last write or create
  returned), as Element X does (docs/protocol.md, "AAD").
* The check code is ``Export(CC_CTX, 2)`` shown as ``b0 % 9 + 1, b1 % 10``.

The MSC text, vodozemac's source and Element X disagree on the two labels and on how the AAD writes the base
URL; :class:`HpkeProfile` selects one set.
"""

from __future__ import annotations

import enum
import hmac
import secrets

from .._b64 import InvalidBase64, b64decode, b64encode
from . import _hpke_primitives as hpke
from ._state import CHECK_CODE_STATES, HandshakeChannel, Operation, transition
from ._url import serialise_url
from ._x25519 import check_public_key
from .base import (
    KEY_LENGTH,
    LOGIN_INITIATE,
    LOGIN_OK,
    ChannelStateError,
    CheckCode,
    HandshakeError,
    InvalidAadField,
    InvalidKey,
    MessageDecodeError,
    MissingSequenceToken,
    Role,
)

__all__ = ["INFO", "RESPONSE_NONCE_LENGTH", "HpkeChannel", "HpkeProfile", "build_aad"]

INFO = b"MATRIX_QR_CODE_LOGIN"
"""The HPKE ``info`` string (and the application prefix of every label)."""

RESPONSE_NONCE_LENGTH = 32
"""vodozemac draws the response nonce with the AEAD key size, 32 bytes."""

_TAG_LENGTH = 16
_U8_MAX = 0xFF
_U16_MAX = 0xFFFF


class HpkeProfile(enum.Enum):
    """The labels and AAD encoding to use where the sources disagree (docs/protocol.md, "Profiles").

    Parse a name with :meth:`parse` or ``HpkeProfile(name)``. The canonical names are the values
    (``"element-x"``, ``"msc4388"``, ``"vodozemac"``); ``"msc"`` is an older name of ``"msc4388"``.
    """

    MSC = "msc4388"
    """The MSC4388 text (``001ad154``): response label ``"MATRIX_QR_CODE_LOGIN response"``, check-code context
    ``"…_CHECKCODE"‖Gp‖Sp``, AAD base URL as u8 length + the exact QR bytes."""
    VODOZEMAC = "vodozemac"
    """vodozemac's labels, ``"MATRIX_QR_CODE_LOGIN_RESPONSE"`` and ``"…_CHECKCODE|" b64(Gp) "|" b64(Sp)``; the
    AAD as in the text."""
    ELEMENT_X = "element-x"
    """Element X's Gen-2 branch: vodozemac's labels, and the AAD base URL as u16 length + the ``url`` crate's
    serialisation of the QR's base URL."""

    @classmethod
    def parse(cls, name: str) -> HpkeProfile:
        """The profile called ``name`` (a value or an alias); :class:`ValueError` for an unknown name."""
        return cls(name)

    @classmethod
    def _missing_(cls, value: object) -> HpkeProfile | None:
        # Older names, still accepted everywhere a profile is parsed (the test peer, the command line).
        return _ALIASES.get(value) if isinstance(value, str) else None

    @classmethod
    def for_layout(cls, layout: str) -> HpkeProfile | None:
        """The profile a Gen-2 QR code written in the layout named ``layout`` (a ``Gen2Layout`` value) implies.

        Each layout a live client writes goes with one channel: ``"element-x"`` (u8 id, u16 base URL) with
        Element X's, ``"msc4388"`` (u8, u8) with the text's. The u16/u16 layout of older revisions implies none
        (no client that writes it speaks a Gen-2 channel): ``None``.
        """
        try:
            return cls(layout)
        except ValueError:
            return None

    @property
    def layout(self) -> str:
        """The name of the QR layout (a ``Gen2Layout`` value) a device speaking this profile writes, so that the
        scanner can tell the profile from the code (:meth:`for_layout`)."""
        return "element-x" if self is HpkeProfile.ELEMENT_X else "msc4388"

    def response_label(self) -> bytes:
        """The exporter context for the response secret."""
        if self is HpkeProfile.MSC:
            return INFO + b" response"
        return INFO + b"_RESPONSE"

    def check_code_context(self, generator_key: bytes, scanner_key: bytes) -> bytes:
        """The exporter context for the check bytes."""
        if self is HpkeProfile.MSC:
            return INFO + b"_CHECKCODE" + generator_key + scanner_key
        # G's key first on both sides, whichever side computes it.
        return INFO + b"_CHECKCODE|" + f"{b64encode(generator_key)}|{b64encode(scanner_key)}".encode("ascii")

    def aad_prefix(self, base_url: str, rendezvous_id: str) -> bytes:
        """The AAD's base URL and rendezvous id fields, the part that is the same for every message.

        Raises :class:`InvalidAadField` if a field does not fit its length, or (``element-x``) if the base URL
        cannot be serialised.
        """
        if self is HpkeProfile.ELEMENT_X:
            # Element X binds its parsed Url: the QR carries "https://host", both sides bind "https://host/".
            try:
                url = serialise_url(base_url)
            except ValueError as exc:
                raise InvalidAadField(f"base URL cannot be serialised: {exc}") from None
            url_field = _aad_field(url, "base URL", _U16_MAX)
        else:
            url_field = _aad_field(base_url, "base URL", _U8_MAX)
        return url_field + _aad_field(rendezvous_id, "rendezvous id", _U8_MAX)


_ALIASES = {"msc": HpkeProfile.MSC}


def _aad_field(value: str, what: str, limit: int) -> bytes:
    """``value`` in UTF-8 behind its big-endian length: one byte wide for ``limit`` 255, two for 65535."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidAadField(f"{what} is not valid Unicode") from None
    if len(raw) > limit:
        raise InvalidAadField(f"{what} is {len(raw)} bytes; the AAD allows at most {limit}")
    return len(raw).to_bytes(1 if limit == _U8_MAX else 2, "big") + raw


def build_aad(base_url: str, rendezvous_id: str, sequence_token: str, profile: HpkeProfile = HpkeProfile.MSC) -> bytes:
    """The AAD of one message: ``profile``'s base URL and id fields, then ``u8len(token)‖token``.

    ``msc4388``, ``vodozemac``: ``u8len(base_url)‖base_url‖u8len(id)‖id‖u8len(token)‖token``, the base URL
    exactly as in the QR code. ``element-x``: ``u16len(url)‖url‖u8len(id)‖id‖u8len(token)‖token``, ``url`` the
    ``url`` crate's serialisation of the base URL (:func:`serialise_url`). All text is UTF-8.
    """
    return profile.aad_prefix(base_url, rendezvous_id) + _aad_field(sequence_token, "sequence token", _U8_MAX)


def response_key_material(response_secret: bytes, enc: bytes, response_nonce: bytes) -> tuple[bytes, bytes]:
    """The OHTTP-style response AEAD key and base nonce: HKDF-SHA256 with salt ``enc ‖ response_nonce``."""
    prk = hpke.hkdf_extract(enc + response_nonce, response_secret)
    return (
        hpke.hkdf_expand(prk, b"key", hpke.AEAD_KEY_LENGTH),
        hpke.hkdf_expand(prk, b"nonce", hpke.AEAD_NONCE_LENGTH),
    )


def _response_context(exporting: hpke.Context, profile: HpkeProfile, enc: bytes, nonce: bytes) -> hpke.Context:
    secret = exporting.export(profile.response_label(), hpke.AEAD_KEY_LENGTH)
    key, base_nonce = response_key_material(secret, enc, nonce)
    # No exporter secret: nothing may be exported from the response context.
    return hpke.Context(key, base_nonce, exporter_secret=None)


def _decode(message: str, prefix_length: int, what: str) -> tuple[bytes, bytes]:
    """Split ``b64(prefix ‖ ciphertext)``; the ciphertext must at least hold its tag."""
    try:
        raw = b64decode(message)
    except InvalidBase64 as exc:
        raise MessageDecodeError(f"{what} is not valid base64: {exc}") from None
    if len(raw) < prefix_length + _TAG_LENGTH:
        raise MessageDecodeError(f"{what} is too short")
    return raw[:prefix_length], raw[prefix_length:]


class HpkeChannel(HandshakeChannel):
    """The Gen-2 (MSC4388) secure channel. Build one with :meth:`generator` or :meth:`scanner`.

    Implements :class:`~qrlink_client.channel.base.SecureChannel`. Every method that seals or opens needs the
    ``sequence_token`` for the AAD and raises :class:`MissingSequenceToken` without it.
    """

    def __init__(
        self,
        role: Role,
        base_url: str,
        rendezvous_id: str,
        secret_key: bytes | None = None,
        profile: HpkeProfile = HpkeProfile.MSC,
    ) -> None:
        profile = HpkeProfile(profile)
        # Built once: it validates both fields up front, and only the sequence token changes per message.
        aad_prefix = profile.aad_prefix(base_url, rendezvous_id)
        super().__init__(role, secret_key)
        self._base_url = base_url
        self._rendezvous_id = rendezvous_id
        self._profile = profile
        self._aad_prefix = aad_prefix
        self._send: hpke.Context | None = None
        self._receive: hpke.Context | None = None
        self._check_bytes: bytes | None = None

    @classmethod
    def generator(
        cls,
        base_url: str,
        rendezvous_id: str,
        secret_key: bytes | None = None,
        profile: HpkeProfile = HpkeProfile.MSC,
    ) -> HpkeChannel:
        """G's channel. ``base_url`` and ``rendezvous_id`` exactly as they go into the QR code."""
        return cls(Role.GENERATOR, base_url, rendezvous_id, secret_key, profile)

    @classmethod
    def scanner(
        cls,
        base_url: str,
        rendezvous_id: str,
        secret_key: bytes | None = None,
        profile: HpkeProfile = HpkeProfile.MSC,
    ) -> HpkeChannel:
        """S's channel. ``base_url`` and ``rendezvous_id`` exactly as read from the QR code."""
        return cls(Role.SCANNER, base_url, rendezvous_id, secret_key, profile)

    @property
    def profile(self) -> HpkeProfile:
        """The profile in use: the labels and the AAD encoding."""
        return self._profile

    @property
    def base_url(self) -> str:
        """The base URL exactly as in the QR code (``element-x`` binds its serialisation into the AAD)."""
        return self._base_url

    @property
    def rendezvous_id(self) -> str:
        """The rendezvous id bound into the AAD."""
        return self._rendezvous_id

    @property
    def check_code(self) -> CheckCode:
        """The Gen-2 check code (10..99); G has it after accept_initiate, S after accept_ok."""
        if self._check_bytes is None or self._state not in CHECK_CODE_STATES[self._role]:
            raise ChannelStateError("the check code is not available yet")
        return CheckCode.no_leading_zero(self._check_bytes)

    def aad(self, sequence_token: str | None) -> bytes:
        """The AAD for ``sequence_token`` on this rendezvous."""
        if sequence_token is None:
            raise MissingSequenceToken("Gen-2 messages need the sequence_token that goes into the AAD")
        return self._aad_prefix + _aad_field(sequence_token, "sequence token", _U8_MAX)

    def _check_bytes_from(self, context: hpke.Context, generator_key: bytes, scanner_key: bytes) -> bytes:
        return context.export(self._profile.check_code_context(generator_key, scanner_key), 2)

    # --- handshake ------------------------------------------------------------------------------------------

    def initiate(self, peer_public_key: bytes, *, sequence_token: str | None = None) -> str:
        """S: SetupBaseS to G's key and return LoginInitiateMessage, sealed with ``sequence_token``'s AAD."""
        next_state = transition(self._role, Operation.INITIATE, self._state)
        aad = self.aad(sequence_token)
        generator_key = check_public_key(peer_public_key, "generator public key")
        enc, sender = hpke.setup_base_sender(generator_key, INFO, self._key_pair)
        ciphertext = sender.seal(aad, LOGIN_INITIATE)
        self._send, self._peer_public_key = sender, generator_key
        self._state = next_state
        return b64encode(enc + ciphertext)

    def accept_initiate(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """G: open LoginInitiateMessage with ``sequence_token``'s AAD; return S's public key (``enc``).

        Raises :class:`MessageDecodeError`, :class:`NonContributoryKey`, :class:`DecryptionError` or
        :class:`HandshakeError`; on any of them the channel stays as it was.
        """
        next_state = transition(self._role, Operation.ACCEPT_INITIATE, self._state)
        aad = self.aad(sequence_token)
        enc, ciphertext = _decode(message, KEY_LENGTH, "LoginInitiateMessage")
        receiver = hpke.setup_base_recipient(enc, self._key_pair, INFO)
        if not hmac.compare_digest(receiver.open(aad, ciphertext), LOGIN_INITIATE):
            raise HandshakeError("LoginInitiateMessage does not hold the initiate string")
        self._receive, self._peer_public_key = receiver, enc
        self._check_bytes = self._check_bytes_from(receiver, self.public_key, enc)
        self._state = next_state
        return enc

    def ok_message(self, *, sequence_token: str | None = None, response_nonce: bytes | None = None) -> str:
        """G: build the response context and return LoginOkMessage, sealed with ``sequence_token``'s AAD.

        ``response_nonce`` (32 bytes) is drawn from :mod:`secrets` unless given (test vectors).
        """
        next_state = transition(self._role, Operation.OK_MESSAGE, self._state)
        aad = self.aad(sequence_token)
        if response_nonce is None:
            response_nonce = secrets.token_bytes(RESPONSE_NONCE_LENGTH)
        if len(response_nonce) != RESPONSE_NONCE_LENGTH:
            raise InvalidKey(f"response nonce must be {RESPONSE_NONCE_LENGTH} bytes")
        assert self._receive is not None and self._peer_public_key is not None  # by the state machine
        sender = _response_context(self._receive, self._profile, self._peer_public_key, bytes(response_nonce))
        ciphertext = sender.seal(aad, LOGIN_OK)
        self._send = sender
        self._state = next_state
        return b64encode(bytes(response_nonce) + ciphertext)

    def accept_ok(self, message: str, *, sequence_token: str | None = None) -> None:
        """S: open LoginOkMessage with ``sequence_token``'s AAD; afterwards the check code may be shown."""
        next_state = transition(self._role, Operation.ACCEPT_OK, self._state)
        aad = self.aad(sequence_token)
        response_nonce, ciphertext = _decode(message, RESPONSE_NONCE_LENGTH, "LoginOkMessage")
        assert self._send is not None and self._peer_public_key is not None  # by the state machine
        receiver = _response_context(self._send, self._profile, self.public_key, response_nonce)
        if not hmac.compare_digest(receiver.open(aad, ciphertext), LOGIN_OK):
            raise HandshakeError("LoginOkMessage does not hold the OK string")
        self._receive = receiver
        self._check_bytes = self._check_bytes_from(self._send, self._peer_public_key, self.public_key)
        self._state = next_state

    # --- messages -------------------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, *, sequence_token: str | None = None) -> str:
        """Seal ``plaintext`` with the next own sequence number and ``sequence_token``'s AAD."""
        transition(self._role, Operation.ENCRYPT, self._state)
        aad = self.aad(sequence_token)
        assert self._send is not None  # by the state machine
        return b64encode(self._send.seal(aad, bytes(plaintext)))

    def decrypt(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """Open the peer's next message; replays, reordering and a wrong token fail with DecryptionError."""
        transition(self._role, Operation.DECRYPT, self._state)
        aad = self.aad(sequence_token)
        _, ciphertext = _decode(message, 0, "message")
        assert self._receive is not None  # by the state machine
        return self._receive.open(aad, ciphertext)

    def __repr__(self) -> str:
        return (
            f"HpkeChannel(role={self._role.name}, state={self._state.value}, profile={self._profile.value}, "
            f"public_key={b64encode(self.public_key)})"
        )
