"""The Matrix client-server request the new device makes with its new access token: ``whoami``, which says
whose token it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from ._fields import optional_str, required_str
from ._http import join, json_body, request
from .errors import HomeserverRequestFailed, OAuthProtocolError

__all__ = ["WhoAmI", "whoami"]


@dataclass(frozen=True)
class WhoAmI:
    """``GET /account/whoami``: who the access token belongs to."""

    user_id: str
    device_id: str | None


async def whoami(http: httpx.AsyncClient, base_url: str, access_token: str) -> WhoAmI:
    """``GET /_matrix/client/v3/account/whoami`` with ``access_token``."""
    response = await request(
        http,
        "GET",
        join(base_url, "_matrix/client/v3/account/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
    )
    body = json_body(response, "whoami", allow_error=True)
    if response.status_code != 200:
        errcode = body.get("errcode") if isinstance(body, Mapping) else None
        raise HomeserverRequestFailed(
            "whoami failed", error=errcode if isinstance(errcode, str) else None, status=response.status_code
        )
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("whoami answer is not a JSON object")
    return WhoAmI(user_id=required_str(body, "user_id", "whoami"), device_id=optional_str(body, "device_id", "whoami"))
