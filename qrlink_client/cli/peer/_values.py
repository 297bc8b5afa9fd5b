"""Request and response values both the channel ops and the handshake ops read or write: the plaintext of a
message and the Gen-2 channel profile.
"""

from __future__ import annotations

from ...channel import HpkeProfile
from ...request_fields import InvalidFieldValue, Request, Response
from ...request_fields import choice_field as _choice
from ...request_fields import required_hex_field as _req_hex
from ...request_fields import required_str_field as _req_str

__all__ = ["hpke_profile", "plaintext", "plaintext_fields"]


def plaintext(req: Request) -> bytes:
    """``plaintext`` (text, sent as UTF-8) or, for binary payloads, ``plaintext_hex``."""
    if req.get("plaintext_hex") is not None:
        return _req_hex(req, "plaintext_hex")
    return _req_str(req, "plaintext").encode("utf-8")


def plaintext_fields(plaintext: bytes) -> Response:
    out: Response = {"plaintext_hex": plaintext.hex()}
    try:
        out["plaintext"] = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        out["plaintext"] = None
    return out


def hpke_profile(req: Request, generation: int, default: HpkeProfile | None = HpkeProfile.MSC) -> HpkeProfile | None:
    """The request's HPKE ``profile`` (a name or an alias), which a Gen-1 request must not give."""
    if generation == 1:
        if req.get("profile") is not None:
            raise InvalidFieldValue("field 'profile' applies to Gen-2 channels only")
        return None
    if req.get("profile") is None:
        return default
    return _choice(req, "profile", HpkeProfile)
