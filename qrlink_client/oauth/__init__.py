"""The new device's OAuth 2.0 device authorization grant (RFC 8628) against a Matrix homeserver
(docs/protocol.md, "OAuth 2.0 device authorization grant"), async over httpx.

One entry point: :meth:`DeviceGrantClient.create` discovers the auth server metadata (MSC2965: stable
``/_matrix/client/v1/auth_metadata``, then the unstable ``org.matrix.msc2965`` path), checks that the device
grant is offered, and registers a public client (RFC 7591 / MSC2966) unless a static ``client_id`` is configured.
Then :meth:`~DeviceGrantClient.request_device_authorization` (scope with exactly one device, stable or MSC2967
unstable prefix), :meth:`~DeviceGrantClient.poll_token` (honours ``interval``, ``slow_down``,
``authorization_pending``, ``access_denied`` and ``expired_token``, whatever the HTTP status: MAS answers them with
403), :meth:`~DeviceGrantClient.refresh`, and :func:`whoami`.

Tokens and device codes never reach logs, reprs or exception messages.

- :mod:`.grant`: the grant's values (grant types, :func:`device_scope`, the parsed answers); pure.
- :mod:`.metadata`: :class:`AuthMetadata` and :func:`discover_auth_metadata`.
- :mod:`.registration`: :class:`ClientMetadata` and ``register_client``.
- :mod:`.client`: :class:`DeviceGrantClient`, the device authorization request, polling and refresh.
- :mod:`.homeserver`: :func:`whoami`.
- :mod:`.errors`: :class:`OAuthError` and its subclasses.
"""

from .client import DeviceGrantClient
from .errors import (
    AuthMetadataUnavailable,
    ClientRegistrationFailed,
    DeviceAuthorizationFailed,
    DeviceGrantDenied,
    DeviceGrantExpired,
    DeviceGrantUnsupported,
    HomeserverRequestFailed,
    OAuthError,
    OAuthProtocolError,
    OAuthTransportError,
    TokenRequestFailed,
)
from .grant import DEFAULT_INTERVAL as DEFAULT_INTERVAL
from .grant import (
    DEVICE_CODE_GRANT_TYPE,
    REFRESH_TOKEN_GRANT_TYPE,
    DeviceAuthorization,
    ScopePrefix,
    TokenResponse,
    device_scope,
)
from .grant import SLOW_DOWN_INCREMENT as SLOW_DOWN_INCREMENT
from .homeserver import WhoAmI, whoami
from .metadata import STABLE_METADATA_PATH as STABLE_METADATA_PATH
from .metadata import UNSTABLE_METADATA_PATH as UNSTABLE_METADATA_PATH
from .metadata import AuthMetadata, discover_auth_metadata
from .registration import ClientMetadata
from .registration import register_client as register_client

__all__ = [
    "DEVICE_CODE_GRANT_TYPE",
    "REFRESH_TOKEN_GRANT_TYPE",
    "AuthMetadata",
    "AuthMetadataUnavailable",
    "ClientMetadata",
    "ClientRegistrationFailed",
    "DeviceAuthorization",
    "DeviceAuthorizationFailed",
    "DeviceGrantClient",
    "DeviceGrantDenied",
    "DeviceGrantExpired",
    "DeviceGrantUnsupported",
    "HomeserverRequestFailed",
    "OAuthError",
    "OAuthProtocolError",
    "OAuthTransportError",
    "ScopePrefix",
    "TokenRequestFailed",
    "TokenResponse",
    "WhoAmI",
    "device_scope",
    "discover_auth_metadata",
    "whoami",
]
