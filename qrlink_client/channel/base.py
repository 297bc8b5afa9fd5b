"""What both secure channels share: roles, the check code, the channel interface and its errors.

Roles: **G** generates and shows the QR code and owns the key in it; **S** scans it and speaks first
(LoginInitiateMessage). G answers with LoginOkMessage. S knows the channel is good from LoginOk alone; G knows
only once its user has typed in the check code S shows.

The wire format: docs/protocol.md, "Roles".
"""

from __future__ import annotations

import enum
import hmac
from typing import Protocol

from ..errors import QrLinkError

__all__ = [
    "ChannelError",
    "ChannelStateError",
    "CheckCode",
    "DecryptionError",
    "HandshakeError",
    "InvalidAadField",
    "InvalidKey",
    "MessageDecodeError",
    "MissingSequenceToken",
    "NonContributoryKey",
    "Role",
    "SecureChannel",
]

LOGIN_INITIATE = b"MATRIX_QR_CODE_LOGIN_INITIATE"
"""The plaintext of S's first message (both generations)."""

LOGIN_OK = b"MATRIX_QR_CODE_LOGIN_OK"
"""The plaintext of G's first message (both generations)."""

KEY_LENGTH = 32
"""Length of X25519 public and secret keys."""


# --- errors -------------------------------------------------------------------------------------------------


class ChannelError(QrLinkError):
    """Base class of every secure-channel error."""


class DecryptionError(ChannelError):
    """A message failed authentication: wrong key, tampered, replayed, out of order or bound to other AAD."""


class HandshakeError(ChannelError):
    """A handshake message decrypted but did not hold the expected LoginInitiate/LoginOk plaintext."""


class NonContributoryKey(ChannelError):
    """The peer's public key gives an all-zero X25519 shared secret (a low-order point)."""


class MessageDecodeError(ChannelError):
    """A message is not valid base64, lacks its framing, or is too short to hold what it must."""


class ChannelStateError(ChannelError):
    """The operation is not valid in the channel's current state or role."""


class InvalidKey(ChannelError):
    """A public or secret key passed by the caller is not 32 bytes (or a nonce has the wrong length)."""


class MissingSequenceToken(ChannelError):
    """A Gen-2 operation was called without the ``sequence_token`` its AAD needs."""


class InvalidAadField(ChannelError):
    """A base URL, rendezvous id or sequence token is longer than the 255 bytes its u8 AAD length allows, or is
    not valid Unicode (a lone surrogate has no UTF-8 form)."""


# --- values -------------------------------------------------------------------------------------------------


class Role(enum.Enum):
    """Which side of the channel this is."""

    GENERATOR = "G"
    """Shows the QR code (owns the key in it) and answers with LoginOk."""
    SCANNER = "S"
    """Scans the QR code and sends LoginInitiate."""


class CheckCode:
    """The two-digit code S shows and the user types into G.

    Gen-1 digits are ``b0 % 10, b1 % 10`` and may start with 0 (vodozemac ``AllowLeadingZero``); Gen-2 digits
    are ``b0 % 9 + 1, b1 % 10``, always 10..99 (``NoLeadingZero``). Its ``repr`` hides the value: the code
    must reach the user's eyes, not logs.
    """

    __slots__ = ("_digits", "_raw")

    def __init__(self, digits: str, raw: bytes) -> None:
        self._digits = digits
        self._raw = bytes(raw)

    @classmethod
    def allow_leading_zero(cls, raw: bytes) -> CheckCode:
        """The Gen-1 (ECIES) rule: ``str(b0 % 10) + str(b1 % 10)``."""
        _require_two(raw)
        return cls(f"{raw[0] % 10}{raw[1] % 10}", raw)

    @classmethod
    def no_leading_zero(cls, raw: bytes) -> CheckCode:
        """The Gen-2 (HPKE) rule: ``str(b0 % 9 + 1) + str(b1 % 10)``."""
        _require_two(raw)
        return cls(f"{raw[0] % 9 + 1}{raw[1] % 10}", raw)

    @property
    def digits(self) -> str:
        """The two decimal digits to display, e.g. ``"07"`` or ``"44"``."""
        return self._digits

    @property
    def raw(self) -> bytes:
        """The two check bytes the digits were derived from."""
        return self._raw

    def matches(self, entered: str) -> bool:
        """Whether the user's input equals the code, ignoring surrounding whitespace (constant time).

        Any other text is simply not the code, so it gives ``False`` and never an error, including text that has
        no UTF-8 form (a lone surrogate, as a terminal decoding undecodable bytes with ``surrogateescape``
        produces).
        """
        try:
            typed = entered.strip().encode("utf-8")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(typed, self._digits.encode("ascii"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckCode):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw) and self._digits == other._digits

    def __hash__(self) -> int:
        return hash((self._digits, self._raw))

    def __repr__(self) -> str:
        return "CheckCode(<hidden>)"


def _require_two(raw: bytes) -> None:
    if len(raw) != 2:
        raise ValueError("check code needs exactly 2 bytes")


class SecureChannel(Protocol):
    """The interface both channels implement: EciesChannel (Gen-1) and HpkeChannel (Gen-2).

    Pure: no I/O and no clock; randomness only for keys and nonces, which callers can fix. Messages are text,
    ready to be the rendezvous payload. ``sequence_token`` is required by Gen-2 (it goes into the AAD) and
    ignored by Gen-1.
    """

    @property
    def role(self) -> Role:
        """Whether this side is the generator (G) or the scanner (S)."""
        ...

    @property
    def public_key(self) -> bytes:
        """Own X25519 public key: G's is the one in the QR code, S's is Sp (the HPKE ``enc`` in Gen-2)."""
        ...

    def initiate(self, peer_public_key: bytes, *, sequence_token: str | None = None) -> str:
        """S: build LoginInitiateMessage to G's public key (from the QR code)."""
        ...

    def accept_initiate(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """G: check LoginInitiateMessage, establish the keys; return S's public key."""
        ...

    def ok_message(self, *, sequence_token: str | None = None, response_nonce: bytes | None = None) -> str:
        """G: build LoginOkMessage (after :meth:`accept_initiate`)."""
        ...

    def accept_ok(self, message: str, *, sequence_token: str | None = None) -> None:
        """S: check LoginOkMessage; the channel is then established and the check code can be shown."""
        ...

    @property
    def check_code(self) -> CheckCode:
        """The check code: G has it after :meth:`accept_initiate`, S after :meth:`accept_ok`."""
        ...

    def encrypt(self, plaintext: bytes, *, sequence_token: str | None = None) -> str:
        """Seal the next outgoing message."""
        ...

    def decrypt(self, message: str, *, sequence_token: str | None = None) -> bytes:
        """Open the next incoming message, strictly in order."""
        ...
