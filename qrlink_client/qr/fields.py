"""A QR code as JSON fields and back: what ``qrlink qr decode`` prints and the interop peer's ``qr_decode``
and ``qr_encode`` exchange.

Gen-1 fields: ``generation`` (1), ``prefix`` (``"MATRIX"``), ``public_key_b64``, ``mode`` (3 or 4),
``rendezvous_url``, ``server_name``. Gen-2 fields: ``generation`` (2), ``prefix``, ``public_key_b64``,
``intent`` (0 or 1), ``rendezvous_id``, ``base_url``. Public keys are unpadded standard base64.

:func:`qr_to_text_fields` gives the same fields as text for people: the mode or intent named
(``login (0x03, new device shows it)``) and the generation with its MSC.
"""

from __future__ import annotations

from .._b64 import b64encode
from ..request_fields import (
    InvalidFieldValue,
    Request,
    Response,
    b64_field,
    choice_field,
    int_field,
    optional_str_field,
    required_str_field,
)
from .codec import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode, QrCode, QrPrefix

__all__ = ["intent_label", "qr_from_fields", "qr_to_fields", "qr_to_text_fields"]


def qr_to_fields(code: QrCode) -> Response:
    """The fields of a decoded QR code (the ``qr_decode`` response)."""
    if isinstance(code, Gen1QrCode):
        return {
            "generation": 1,
            "prefix": QrPrefix.MATRIX.name,
            "public_key_b64": b64encode(code.public_key),
            "mode": int(code.mode),
            "rendezvous_url": code.rendezvous_url,
            "server_name": code.server_name,
        }
    return {
        "generation": 2,
        "prefix": code.prefix.name,
        "public_key_b64": b64encode(code.public_key),
        "intent": int(code.intent),
        "rendezvous_id": code.rendezvous_id,
        "base_url": code.base_url,
    }


_SHOWN_BY = {"LOGIN": "new device shows it", "RECIPROCATE": "existing device shows it"}
_MSC = {1: "MSC4108", 2: "MSC4388"}


def intent_label(value: Gen1Mode | Gen2Intent) -> str:
    """A Gen-1 mode or Gen-2 intent for people: its name, byte and which device shows the code, e.g.
    ``login (0x03, new device shows it)`` or ``reciprocate (0x01, existing device shows it)``."""
    shown_by = _SHOWN_BY.get(value.name)
    detail = f"0x{int(value):02x}, {shown_by}" if shown_by else f"0x{int(value):02x}"
    return f"{value.name.lower()} ({detail})"


def qr_to_text_fields(code: QrCode) -> dict[str, str]:
    """The fields of :func:`qr_to_fields` as text for people (``qrlink qr decode`` without ``--json``): the
    generation with its MSC, the mode or intent by :func:`intent_label`, ``-`` for an absent value."""
    fields = {name: "-" if value is None else str(value) for name, value in qr_to_fields(code).items()}
    fields["generation"] = f"{code.generation} ({_MSC[code.generation]})"
    if isinstance(code, Gen1QrCode):
        fields["mode"] = intent_label(code.mode)
    else:
        fields["intent"] = intent_label(code.intent)
    return fields


def qr_from_fields(req: Request) -> QrCode:
    """Build a QR code from the fields :func:`qr_to_fields` produces (the ``qr_encode`` request).

    Raises :class:`~qrlink_client.request_fields.MissingField` or
    :class:`~qrlink_client.request_fields.InvalidFieldValue` for a bad field, and the codec's own errors
    (:class:`~qrlink_client.qr.QrCodeError`) for values no QR code can hold.
    """
    generation = int_field(req, "generation", (1, 2))
    public_key = b64_field(req, "public_key_b64")
    if generation == 1:
        if choice_field(req, "prefix", QrPrefix, default=QrPrefix.MATRIX) is not QrPrefix.MATRIX:
            raise InvalidFieldValue("a Gen-1 QR code always has the MATRIX prefix")
        mode = Gen1Mode(int_field(req, "mode", tuple(Gen1Mode)))
        return Gen1QrCode(
            public_key, mode, required_str_field(req, "rendezvous_url"), optional_str_field(req, "server_name")
        )
    prefix = choice_field(req, "prefix", QrPrefix, default=QrPrefix.IO_ELEMENT_MSC4388)
    intent = Gen2Intent(int_field(req, "intent", tuple(Gen2Intent)))
    return Gen2QrCode(
        public_key, intent, required_str_field(req, "rendezvous_id"), required_str_field(req, "base_url"), prefix
    )
