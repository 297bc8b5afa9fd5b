"""Dynamic client registration (RFC 7591 / MSC2966): what a public native client registers, and the request
that returns its ``client_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._fields import required_str
from ._http import error_from, json_body, request
from .errors import ClientRegistrationFailed, DeviceGrantUnsupported, OAuthProtocolError
from .grant import DEVICE_CODE_GRANT_TYPE, REFRESH_TOKEN_GRANT_TYPE
from .metadata import AuthMetadata

__all__ = ["ClientMetadata", "register_client"]


@dataclass(frozen=True)
class ClientMetadata:
    """What a public native client registers (RFC 7591 / MSC2966). MAS insists on ``client_uri``."""

    client_name: str = "qrlink"
    client_uri: str = "https://github.com/matrix-org/matrix-spec-proposals/pull/4108"
    application_type: str = "native"

    def to_json(self) -> dict[str, Any]:
        """The registration request body: no secret (``token_endpoint_auth_method: none``), device + refresh
        grants only, so no redirect URIs are needed."""
        return {
            "client_name": self.client_name,
            "client_uri": self.client_uri,
            "application_type": self.application_type,
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_CODE_GRANT_TYPE, REFRESH_TOKEN_GRANT_TYPE],
            "response_types": [],
        }


async def register_client(http: httpx.AsyncClient, metadata: AuthMetadata, client: ClientMetadata) -> str:
    """Register a public client (RFC 7591) and return its ``client_id``. Raises :class:`DeviceGrantUnsupported`
    without a registration endpoint, :class:`ClientRegistrationFailed` when refused."""
    if not metadata.registration_endpoint:
        raise DeviceGrantUnsupported(f"{metadata.issuer} has no registration endpoint; configure a client ID")
    response = await request(http, "POST", metadata.registration_endpoint, json=client.to_json())
    body = json_body(response, "client registration", allow_error=True)
    if response.status_code not in (200, 201):
        raise error_from(ClientRegistrationFailed, "client registration refused", response, body)
    if not isinstance(body, Mapping):
        raise OAuthProtocolError("client registration answer is not a JSON object")
    return required_str(body, "client_id", "client registration")
