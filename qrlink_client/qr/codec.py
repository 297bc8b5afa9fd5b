"""The binary QR payload of Matrix sign in with QR code, both generations (docs/protocol.md, "QR payloads").

Gen-1 (MSC4108, 2024)::

    "MATRIX" 0x02 mode(0x03|0x04) Gp(32) u16 len+rendezvous_url [u16 len+server_name if mode 0x04]

Gen-2 (MSC4388, newest text)::

    "IO_ELEMENT_MSC4388"|"MATRIX" 0x03 intent(0x00|0x01) Gp(32) u8 len+rendezvous_id u8 len+base_url

All integers are big-endian byte lengths of the UTF-8 text that follows. Decoding dispatches on prefix and the
type byte, so ``MATRIX 0x02`` is Gen-1 and ``MATRIX 0x03`` is a stable-prefixed Gen-2 code.

The Gen-2 length fields come in three layouts (:class:`Gen2Layout`): the text's u8/u8, Element X's u8 id and u16
base URL (also MSC4388 ``726e1154``), and the u16/u16 of older revisions and matrix-sdk-crypto-wasm 18.9.0.
:func:`decode_qr` reads all three and records which one it saw (see :func:`_read_gen2_fields` for the rule);
encoders write the layout a code asks for, the u16/u16 one excepted.

Trailing bytes after the last field are ignored, as the shipping decoders (rust-sdk's cursor reader, and so
matrix-sdk-crypto-wasm) do; a QR scanner may also pad the payload, and rejecting it would buy nothing because
every field is self-delimiting and the channel authenticates the key anyway.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from ..errors import QrLinkError

__all__ = [
    "FieldTooLong",
    "Gen1Mode",
    "Gen1QrCode",
    "Gen2Intent",
    "Gen2Layout",
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


class Gen2Layout(enum.Enum):
    """How a Gen-2 payload writes its two length fields.

    The names of the two layouts a live client writes are :class:`~qrlink_client.channel.HpkeProfile` names
    too, so ``HpkeProfile.parse(code.layout.value)`` gives a scanner its channel profile: an ``element-x``
    code comes from Element X, which needs that profile to log in.
    """

    MSC4388 = "msc4388"
    """u8 id length, u8 base-URL length: the newest MSC4388 text."""
    ELEMENT_X = "element-x"
    """u8 id length, u16 base-URL length: Element X's Gen-2 branch (and MSC4388 ``726e1154``). Encoding drops a
    root ``/`` from the base URL, as Element X's encoder does."""
    LEGACY_U16 = "legacy-u16"
    """u16 lengths for both: older MSC4388 revisions and matrix-sdk-crypto-wasm 18.9.0. Read only:
    :meth:`Gen2QrCode.to_bytes` writes such a code in the :attr:`MSC4388` layout."""


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


def _length_prefixed(text: str, *, width: int, what: str) -> bytes:
    """Encode ``text`` as UTF-8 behind a big-endian length of ``width`` bytes (1 or 2)."""
    raw = text.encode("utf-8")
    limit = _U8_MAX if width == 1 else _U16_MAX
    if len(raw) > limit:
        raise FieldTooLong(f"{what} is {len(raw)} bytes; its length prefix holds at most {limit}")
    return len(raw).to_bytes(width, "big") + raw


def _without_root_slash(url: str) -> str:
    """``url`` less the ``/`` of a bare root path, as Element X writes its base URL (``https://h/`` → ``https://h``).

    Element X trims trailing slashes whenever the path is ``/``, even off a query; a base URL has no query, so
    only the plain case is reproduced and a URL with a query or fragment is left alone.
    """
    parts = urlsplit(url)
    if parts.path == "/" and url.endswith("/") and not parts.query and not parts.fragment:
        return url[:-1]
    return url


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
        out += _length_prefixed(self.rendezvous_url, width=2, what="rendezvous URL")
        if self.server_name is not None:
            out += _length_prefixed(self.server_name, width=2, what="server name")
        return out


@dataclass(frozen=True)
class Gen2QrCode:
    """A Gen-2 (MSC4388) QR payload.

    ``base_url`` is kept exactly as carried in the QR (no slash, case or port normalisation) because the
    secure channel's AAD binds these exact bytes (or, for Element X, their serialisation); normalise a separate
    copy when building request URLs.

    ``layout`` is the one :func:`decode_qr` found, or the one :meth:`to_bytes` is to write. It says how the code
    was written, not what it says, so it takes no part in equality.
    """

    public_key: bytes
    intent: Gen2Intent
    rendezvous_id: str
    base_url: str
    prefix: QrPrefix = QrPrefix.IO_ELEMENT_MSC4388
    layout: Gen2Layout = field(default=Gen2Layout.MSC4388, compare=False)

    generation: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _validate_key(self.public_key)
        try:
            object.__setattr__(self, "intent", Gen2Intent(self.intent))
        except ValueError:
            raise InvalidIntent("Gen-2 intent must be 0x00 (login) or 0x01 (reciprocate)") from None
        if not isinstance(self.prefix, QrPrefix):
            raise InvalidPrefix("prefix must be a QrPrefix")
        if not isinstance(self.layout, Gen2Layout):
            raise InvalidField("layout must be a Gen2Layout")
        # An empty id would encode as a 0x00 length, which decoders read as the start of a legacy u16 length.
        if not self.rendezvous_id:
            raise InvalidField("rendezvous id must not be empty")
        _validate_url(self.base_url)

    def to_bytes(self) -> bytes:
        """Encode in :attr:`layout` (the u8/u8 one for :attr:`Gen2Layout.LEGACY_U16`).

        Raises :class:`FieldTooLong` for an id over 255 bytes, or a base URL over 255 (65535 for
        :attr:`Gen2Layout.ELEMENT_X`).
        """
        out = self.prefix.value + bytes((GEN2_TYPE, self.intent)) + self.public_key
        out += _length_prefixed(self.rendezvous_id, width=1, what="rendezvous id")
        if self.layout is Gen2Layout.ELEMENT_X:
            out += _length_prefixed(_without_root_slash(self.base_url), width=2, what="base URL")
        else:
            out += _length_prefixed(self.base_url, width=1, what="base URL")
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

    def peek(self, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start`` bytes ahead, without moving; fewer near the end."""
        return self._data[self._offset + start : self._offset + start + length]

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
    rendezvous_id, base_url, layout = _read_gen2_fields(reader)
    # The constructor validates the URLs and the id, so decoded and hand-built codes obey the same rules.
    return Gen2QrCode(public_key, Gen2Intent(intent_byte), rendezvous_id, base_url, prefix, layout)


_URL_START = b"http"


def _read_gen2_fields(reader: _Reader) -> tuple[str, str, Gen2Layout]:
    """Read the id and base URL in whichever :class:`Gen2Layout` the code uses, and say which.

    Neither field may be empty and ids are at most 255 bytes, so a length field whose first byte is 0x00 can
    only be the high byte of a u16 length. A u16 id length means the whole code is the u16/u16 layout, whose
    base URL length is u16 as well (even when its high byte is non-zero).

    After a u8 id, a base-URL length whose first byte is not 0x00 is either a u8 length or the high byte of a
    u16 length for a URL of 256 bytes or more. Every base URL starts with ``http``. A u8 layout puts it one
    byte after that first byte, so two bytes after it stands ``ttp``; a u16 layout puts it two bytes after. So
    ``http`` two bytes on means u16, and anything else is read as u8, as it always was.
    """
    if reader.peek_u8() == 0:
        id_length = reader.u16("rendezvous id length")
        rendezvous_id = reader.text(id_length, "rendezvous id")
        url_length = reader.u16("base URL length")
        return rendezvous_id, reader.text(url_length, "base URL"), Gen2Layout.LEGACY_U16
    rendezvous_id = reader.text(reader.u8("rendezvous id length"), "rendezvous id")
    if reader.peek_u8() == 0 or reader.peek(2, len(_URL_START)).lower() == _URL_START:
        url_length, layout = reader.u16("base URL length"), Gen2Layout.ELEMENT_X
    else:
        url_length, layout = reader.u8("base URL length"), Gen2Layout.MSC4388
    return rendezvous_id, reader.text(url_length, "base URL"), layout
