"""The binary QR payload of Matrix sign in with QR code, both generations (docs/protocol.md §2, §0.5).

Gen-1 (MSC4108, 2024)::

    "MATRIX" 0x02 mode(0x03|0x04) Gp(32) u16 len+rendezvous_url [u16 len+server_name if mode 0x04]

Gen-2 (MSC4388, newest text)::

    "IO_ELEMENT_MSC4388"|"MATRIX" 0x03 intent(0x00|0x01) Gp(32) u8 len+rendezvous_id u8 len+base_url

All integers are big-endian byte lengths of the UTF-8 text that follows. Decoding dispatches on prefix and the
type byte, so ``MATRIX 0x02`` is Gen-1 and ``MATRIX 0x03`` is a stable-prefixed Gen-2 code.

Older MSC4388 revisions and matrix-sdk-crypto-wasm 18.9.0 wrote u16 lengths (for the id, and for the base
URL); :func:`decode_qr` accepts those too (see :func:`_read_gen2_fields` for the rule), while encoders always
write the newest u8 layout.

Trailing bytes after the last field are ignored, as the shipping decoders (rust-sdk's cursor reader, and so
matrix-sdk-crypto-wasm) do; a QR scanner may also pad the payload, and rejecting it would buy nothing because
every field is self-delimiting and the channel authenticates the key anyway.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from ..errors import QrLinkError

__all__ = [
    "FieldTooLong",
    "Gen1Mode",
    "Gen1QrCode",
    "Gen2Intent",
    "Gen2QrCode",
    "InvalidField",
    "InvalidIntent",
    "InvalidPrefix",
    "InvalidPublicKey",
    "InvalidType",
    "InvalidUrl",
    "NotEnoughData",
    "NotUtf8",
    "QrCode",
    "QrCodeError",
    "QrPrefix",
    "decode_qr",
]

PUBLIC_KEY_LENGTH = 32
GEN1_TYPE = 0x02
GEN2_TYPE = 0x03
_U8_MAX = 0xFF
_U16_MAX = 0xFFFF


# --- errors -------------------------------------------------------------------------------------------------


class QrCodeError(QrLinkError):
    """Base class of every QR payload encoding or decoding error."""


class InvalidPrefix(QrCodeError):
    """The payload does not start with ``MATRIX`` or ``IO_ELEMENT_MSC4388``."""


class InvalidType(QrCodeError):
    """The type/version byte after the prefix is not one this library knows for that prefix."""


class InvalidIntent(QrCodeError):
    """The Gen-1 mode byte is not 0x03/0x04, or the Gen-2 intent byte is not 0x00/0x01."""


class NotEnoughData(QrCodeError):
    """The payload ends before a field that its layout requires."""


class NotUtf8(QrCodeError):
    """A text field is not valid UTF-8."""


class InvalidUrl(QrCodeError):
    """A URL field is not an absolute ``http``/``https`` URL with a host."""


class InvalidPublicKey(QrCodeError):
    """The public key is not exactly 32 bytes."""


class InvalidField(QrCodeError):
    """A field breaks the layout: an empty rendezvous id, or a server name present/absent against the mode."""


class FieldTooLong(QrCodeError):
    """A field is too long for its length prefix and cannot be encoded."""


# --- values -------------------------------------------------------------------------------------------------


class QrPrefix(enum.Enum):
    """The ASCII prefix that opens the payload."""

    MATRIX = b"MATRIX"
    IO_ELEMENT_MSC4388 = b"IO_ELEMENT_MSC4388"


class Gen1Mode(enum.IntEnum):
    """Gen-1 mode byte: which device shows the code."""

    LOGIN = 0x03
    """The new device shows the QR code and wants to be logged in."""
    RECIPROCATE = 0x04
    """The existing device shows the QR code and offers to log a new device in."""


class Gen2Intent(enum.IntEnum):
    """Gen-2 intent byte: which device shows the code."""

    LOGIN = 0x00
    """The new device shows the QR code and wants to be logged in."""
    RECIPROCATE = 0x01
    """The existing device shows the QR code and offers to log a new device in."""


def _validate_url(url: str) -> None:
    """Require an absolute http(s) URL with a host; raise :class:`InvalidUrl` otherwise."""
    # Control characters cannot travel in an HTTP request line, so a URL holding one is unusable.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidUrl("URL contains control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise InvalidUrl("URL cannot be parsed") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidUrl("URL scheme must be http or https")
    if not parts.hostname:
        raise InvalidUrl("URL has no host")


def _validate_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_LENGTH:
        raise InvalidPublicKey(f"public key must be {PUBLIC_KEY_LENGTH} bytes")


def _length_prefixed(text: str, *, width: int, field: str) -> bytes:
    """Encode ``text`` as UTF-8 behind a big-endian length of ``width`` bytes (1 or 2)."""
    raw = text.encode("utf-8")
    limit = _U8_MAX if width == 1 else _U16_MAX
    if len(raw) > limit:
        raise FieldTooLong(f"{field} is {len(raw)} bytes; its length prefix holds at most {limit}")
    return len(raw).to_bytes(width, "big") + raw


@dataclass(frozen=True)
class Gen1QrCode:
    """A Gen-1 (MSC4108 2024) QR payload.

    ``server_name`` is present exactly when ``mode`` is :attr:`Gen1Mode.RECIPROCATE`. It is free text: js-sdk
    writes a server name, rust-sdk writes the homeserver URL, so it is deliberately not URL-parsed.
    """

    public_key: bytes
    mode: Gen1Mode
    rendezvous_url: str
    server_name: str | None = None

    generation: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _validate_key(self.public_key)
        try:
            object.__setattr__(self, "mode", Gen1Mode(self.mode))
        except ValueError:
            raise InvalidIntent("Gen-1 mode must be 0x03 (login) or 0x04 (reciprocate)") from None
        _validate_url(self.rendezvous_url)
        if (self.mode is Gen1Mode.RECIPROCATE) != (self.server_name is not None):
            raise InvalidField("Gen-1 server name is required for reciprocate and absent for login")

    def to_bytes(self) -> bytes:
        """Encode the payload; raises :class:`FieldTooLong` if a field exceeds 65535 bytes."""
        out = QrPrefix.MATRIX.value + bytes((GEN1_TYPE, self.mode)) + self.public_key
        out += _length_prefixed(self.rendezvous_url, width=2, field="rendezvous URL")
        if self.server_name is not None:
            out += _length_prefixed(self.server_name, width=2, field="server name")
        return out


@dataclass(frozen=True)
class Gen2QrCode:
    """A Gen-2 (MSC4388) QR payload.

    ``base_url`` is kept exactly as carried in the QR (no slash, case or port normalisation) because the
    secure channel's AAD binds these exact bytes; normalise a separate copy when building request URLs.
    """

    public_key: bytes
    intent: Gen2Intent
    rendezvous_id: str
    base_url: str
    prefix: QrPrefix = QrPrefix.IO_ELEMENT_MSC4388

    generation: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _validate_key(self.public_key)
        try:
            object.__setattr__(self, "intent", Gen2Intent(self.intent))
        except ValueError:
            raise InvalidIntent("Gen-2 intent must be 0x00 (login) or 0x01 (reciprocate)") from None
        if not isinstance(self.prefix, QrPrefix):
            raise InvalidPrefix("prefix must be a QrPrefix")
        # An empty id would encode as a 0x00 length, which decoders read as the start of a legacy u16 length.
        if not self.rendezvous_id:
            raise InvalidField("rendezvous id must not be empty")
        _validate_url(self.base_url)

    def to_bytes(self) -> bytes:
        """Encode in the newest layout (u8 lengths); :class:`FieldTooLong` for a field over 255 bytes."""
        out = self.prefix.value + bytes((GEN2_TYPE, self.intent)) + self.public_key
        out += _length_prefixed(self.rendezvous_id, width=1, field="rendezvous id")
        out += _length_prefixed(self.base_url, width=1, field="base URL")
        return out


QrCode = Gen1QrCode | Gen2QrCode


# --- decoding -----------------------------------------------------------------------------------------------


class _Reader:
    """A bounds-checked cursor: every short read becomes :class:`NotEnoughData`, never IndexError."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._offset = offset

    def peek_u8(self) -> int:
        if self._offset >= len(self._data):
            raise NotEnoughData("payload ends before a length field")
        return self._data[self._offset]

    def take(self, n: int, what: str) -> bytes:
        end = self._offset + n
        if end > len(self._data):
            raise NotEnoughData(f"payload ends inside the {what}")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack(">H", self.take(2, what))[0]
        return value

    def text(self, length: int, what: str) -> str:
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NotUtf8(f"the {what} is not valid UTF-8") from None


def decode_qr(data: bytes) -> QrCode:
    """Decode a QR payload of either generation.

    Raises a :class:`QrCodeError` subclass for every malformed input: :class:`InvalidPrefix`,
    :class:`InvalidType`, :class:`InvalidIntent`, :class:`NotEnoughData`, :class:`NotUtf8`,
    :class:`InvalidUrl` or :class:`InvalidField`. Trailing bytes after the last field are ignored (see the
    module docstring).
    """
    data = bytes(data)
    for prefix in QrPrefix:
        if data.startswith(prefix.value):
            break
    else:
        if any(p.value.startswith(data) for p in QrPrefix):
            raise NotEnoughData("payload ends inside the prefix")
        raise InvalidPrefix("payload does not start with a known prefix")

    reader = _Reader(data, len(prefix.value))
    kind = reader.u8("type byte")
    if prefix is QrPrefix.MATRIX and kind == GEN1_TYPE:
        return _decode_gen1(reader)
    if kind == GEN2_TYPE:
        return _decode_gen2(reader, prefix)
    raise InvalidType(f"type byte 0x{kind:02x} is not valid after the {prefix.name} prefix")


def _decode_gen1(reader: _Reader) -> Gen1QrCode:
    mode_byte = reader.u8("mode byte")
    if mode_byte not in (Gen1Mode.LOGIN, Gen1Mode.RECIPROCATE):
        raise InvalidIntent(f"Gen-1 mode byte 0x{mode_byte:02x} is not 0x03 or 0x04")
    mode = Gen1Mode(mode_byte)
    public_key = reader.take(PUBLIC_KEY_LENGTH, "public key")
    rendezvous_url = reader.text(reader.u16("rendezvous URL length"), "rendezvous URL")
    server_name = None
    if mode is Gen1Mode.RECIPROCATE:
        server_name = reader.text(reader.u16("server name length"), "server name")
    return Gen1QrCode(public_key, mode, rendezvous_url, server_name)


def _decode_gen2(reader: _Reader, prefix: QrPrefix) -> Gen2QrCode:
    intent_byte = reader.u8("intent byte")
    if intent_byte not in (Gen2Intent.LOGIN, Gen2Intent.RECIPROCATE):
        raise InvalidIntent(f"Gen-2 intent byte 0x{intent_byte:02x} is not 0x00 or 0x01")
    public_key = reader.take(PUBLIC_KEY_LENGTH, "public key")
    rendezvous_id, base_url = _read_gen2_fields(reader)
    # The constructor validates the URLs and the id, so decoded and hand-built codes obey the same rules.
    return Gen2QrCode(public_key, Gen2Intent(intent_byte), rendezvous_id, base_url, prefix)


def _read_gen2_fields(reader: _Reader) -> tuple[str, str]:
    """Read the id and base URL in the newest (u8) layout or a legacy u16 one.

    Layouts seen: u8 id + u8 URL (newest MSC), u8 id + u16 URL (MSC4388 ``726e1154``), u16 id + u16 URL
    (matrix-sdk-crypto-wasm 18.9.0, rust-sdk main). Neither field may be empty and ids are at most 255 bytes,
    so a length field whose first byte is 0x00 can only be the high byte of a u16 length. A u16 id length
    means the whole code is the legacy layout, whose base URL length is u16 as well (even when its high byte
    is non-zero).
    """
    legacy = reader.peek_u8() == 0
    id_length = reader.u16("rendezvous id length") if legacy else reader.u8("rendezvous id length")
    rendezvous_id = reader.text(id_length, "rendezvous id")
    if legacy or reader.peek_u8() == 0:
        url_length = reader.u16("base URL length")
    else:
        url_length = reader.u8("base URL length")
    return rendezvous_id, reader.text(url_length, "base URL")
