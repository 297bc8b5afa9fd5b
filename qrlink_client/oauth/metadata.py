"""The auth server metadata (RFC 8414) and its discovery through the homeserver (MSC2965): the stable
``/_matrix/client/v1/auth_metadata`` path first, then the unstable ``org.matrix.msc2965`` one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._fields import optional_str, required_str
from ._http import join, json_body, request
from .errors import AuthMetadataUnavailable, OAuthProtocolError
from .grant import DEVICE_CODE_GRANT_TYPE

__all__ = ["STABLE_METADATA_PATH", "UNSTABLE_METADATA_PATH", "AuthMetadata", "discover_auth_metadata"]

logger = logging.getLogger(__package__)  # qrlink_client.oauth: one logger for the package

STABLE_METADATA_PATH = "_matrix/client/v1/auth_metadata"
UNSTABLE_METADATA_PATH = "_matrix/client/unstable/org.matrix.msc2965/auth_metadata"


@dataclass(frozen=True)
class AuthMetadata:
    """The parts of the auth server metadata (RFC 8414) the device grant needs."""

    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str | None
    registration_endpoint: str | None
    revocation_endpoint: str | None
    grant_types_supported: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def supports_device_grant(self) -> bool:
        """Whether the device grant is advertised and has its endpoint."""
        return DEVICE_CODE_GRANT_TYPE in self.grant_types_supported and bool(self.device_authorization_endpoint)

    @classmethod
    def from_json(cls, data: Any) -> AuthMetadata:
        """Parse a metadata document; raises :class:`OAuthProtocolError` when a required member is bad."""
        if not isinstance(data, Mapping):
            raise OAuthProtocolError("auth metadata is not a JSON object")
        grant_types = data.get("grant_types_supported", [])
        if not isinstance(grant_types, list) or not all(isinstance(g, str) for g in grant_types):
            raise OAuthProtocolError("auth metadata grant_types_supported is not a list of strings")
        return cls(
            issuer=required_str(data, "issuer", "auth metadata"),
            token_endpoint=required_str(data, "token_endpoint", "auth metadata"),
            device_authorization_endpoint=optional_str(data, "device_authorization_endpoint", "auth metadata"),
            registration_endpoint=optional_str(data, "registration_endpoint", "auth metadata"),
            revocation_endpoint=optional_str(data, "revocation_endpoint", "auth metadata"),
            grant_types_supported=tuple(grant_types),
            raw=dict(data),
        )


async def discover_auth_metadata(http: httpx.AsyncClient, base_url: str) -> AuthMetadata:
    """Fetch the auth server metadata through the homeserver: stable path first, then the unstable one.

    Raises :class:`AuthMetadataUnavailable` if neither answers 200 with a metadata object.
    """
    failures: list[str] = []
    for path in (STABLE_METADATA_PATH, UNSTABLE_METADATA_PATH):
        response = await request(http, "GET", join(base_url, path))
        if response.status_code == 200:
            return AuthMetadata.from_json(json_body(response, "auth metadata"))
        failures.append(f"{path}: HTTP {response.status_code}")
        logger.debug("auth metadata not at %s (HTTP %s)", path, response.status_code)
    raise AuthMetadataUnavailable("the homeserver has no OAuth 2.0 server metadata (" + "; ".join(failures) + ")")
