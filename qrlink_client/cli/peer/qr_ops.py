"""The QR codec ops: payload bytes to fields (``qr_decode``) and back (``qr_encode``), and the fields a code is
answered with, which ``handshake_start`` reuses. Synchronous and free of I/O.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ...channel import HpkeProfile
from ...qr import Gen2Layout, Gen2QrCode, QrCode, decode_qr
from ...qr.fields import qr_from_fields, qr_to_fields
from ...request_fields import InvalidFieldValue, Request, Response
from ...request_fields import choice_field as _choice
from ...request_fields import required_hex_field as _req_hex
from ..qr import implied_profile

if TYPE_CHECKING:
    from .dispatch import Peer

__all__ = ["op_qr_decode", "op_qr_encode", "qr_fields"]


def qr_fields(code: QrCode) -> Response:
    """A code's fields as ``qr_decode`` answers them: Gen-2 adds the ``profile`` its layout implies."""
    fields = qr_to_fields(code)
    if isinstance(code, Gen2QrCode):
        fields["profile"] = implied_profile(code)
    return fields


def op_qr_decode(peer: Peer, req: Request) -> Response:
    """Decode QR payload bytes; Gen-2 also says which channel profile the layout implies."""
    return qr_fields(decode_qr(_req_hex(req, "hex")))


def op_qr_encode(peer: Peer, req: Request) -> Response:
    """Encode QR fields; a Gen-2 ``profile`` picks the layout (``element-x``: Element X's; else the text's)."""
    code = qr_from_fields(req)
    if isinstance(code, Gen2QrCode):
        profile = _choice(req, "profile", HpkeProfile, default=HpkeProfile.MSC)
        code = dataclasses.replace(code, layout=Gen2Layout(profile.layout))
    elif req.get("profile") is not None:
        raise InvalidFieldValue("field 'profile' applies to Gen-2 codes only")
    return {"hex": code.to_bytes().hex()}
