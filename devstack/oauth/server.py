"""The OAuth 2.0 protocol engine: Authlib's authorization server, grants and endpoints bound to :class:`OAuthStore`.

Authlib supplies the RFC logic (RFC 8628 device grant and polling errors, RFC 6749 refresh, RFC 7591
registration, RFC 7009 revocation, RFC 7662 introspection, client authentication); this module supplies
storage, Matrix scope rules and the response shapes Synapse's MAS mode reads. It is synchronous and does no
I/O: the HTTP layer (:mod:`devstack.oauth.app`) parses requests before and performs homeserver calls after.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    JsonPayload,
    JsonRequest,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint, DeviceCodeGrant

from devstack.oauth.models import Client, DeviceGrant, GrantStatus, OAuthStore, Session, Token
from devstack.oauth.scopes import InvalidMatrixScope, parse_matrix_scope

REFRESH_TOKEN_GRANT_TYPE = "refresh_token"  # noqa: S105 - a grant type's name
GRANT_TYPES_SUPPORTED = [DEVICE_CODE_GRANT_TYPE, REFRESH_TOKEN_GRANT_TYPE]
CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
SYNAPSE_AUTH_METHOD = "synapse_shared_secret"


@dataclass(frozen=True)
class OAuthSettings:
    """Lifetimes and intervals; the defaults follow MAS except the longer access token (a dev convenience)."""

    issuer: str
    device_code_lifetime: int = 1200
    poll_interval: int = 5
    access_token_lifetime: int = 3600

    def endpoint(self, path: str) -> str:
        return self.issuer + path


class OAuthResponse(NamedTuple):
    """What Authlib hands back: status, JSON body (a dict), header pairs."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]


class FormRequest(OAuth2Request):
    """An already-parsed form POST (or query) as Authlib's request object."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str | None]:
        return {}


class _ParsedJson(JsonPayload):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class JsonBodyRequest(JsonRequest):
    """An already-parsed JSON POST as Authlib's request object."""

    def __init__(self, uri: str, headers: Mapping[str, str], data: dict[str, Any]) -> None:
        super().__init__("POST", uri, headers)
        self.payload = _ParsedJson(data)


@dataclass(eq=False)
class ResourceServer(ClientMixin):
    """Synapse, as the one caller allowed to introspect: it authenticates with the MAS shared secret."""

    def get_client_id(self) -> str:
        return "synapse"

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == SYNAPSE_AUTH_METHOD

    def check_grant_type(self, grant_type: str) -> bool:
        return False


class DevAuthorizationServer(AuthorizationServer):
    """Authlib's server with storage in :class:`OAuthStore`, Matrix scope rules and token generation."""

    def __init__(self, store: OAuthStore, settings: OAuthSettings, synapse_secret: str) -> None:
        super().__init__(scopes_supported=None)
        self.store = store
        self.settings = settings
        self._synapse_secret = synapse_secret
        self._resource_server = ResourceServer()
        self._bearer = BearerTokenGenerator(
            access_token_generator=_new_access_token,
            refresh_token_generator=_new_refresh_token,
            expires_generator=lambda client, grant_type: settings.access_token_lifetime,
        )
        self.register_token_generator("default", self._bearer)
        self.register_client_auth_method(SYNAPSE_AUTH_METHOD, self._authenticate_synapse)
        self.register_grant(MatrixDeviceCodeGrant)
        self.register_grant(RotatingRefreshTokenGrant)
        # The stubs type register_endpoint for the newer Endpoint base only; these two predate it.
        self.register_endpoint(MatrixDeviceAuthorizationEndpoint(self))  # type: ignore[arg-type]
        self.register_endpoint(OpenClientRegistrationEndpoint(self))  # type: ignore[arg-type]
        self.register_endpoint(SessionRevocationEndpoint(self))
        self.register_endpoint(SynapseIntrospectionEndpoint(self))

    def __repr__(self) -> str:
        return f"DevAuthorizationServer(issuer={self.settings.issuer!r})"

    # -- Authlib framework hooks -----------------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:  # type: ignore[override]
        return self.store.clients.get(client_id)

    def create_oauth2_request(self, request: FormRequest) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonBodyRequest) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status, dict(body or {}), [(str(k), str(v)) for k, v in headers])

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        """Authlib signals (``after_revoke_token`` …) have no listeners here."""

    def validate_requested_scope(self, scope: str | None) -> None:
        try:
            parse_matrix_scope(scope)
        except InvalidMatrixScope as error:
            raise InvalidScopeError(str(error)) from None

    # -- tokens ----------------------------------------------------------------------------------------------

    def save_token(self, token: dict[str, str | int], request: OAuth2Request) -> None:
        session: Session
        if isinstance(request.credential, DeviceGrant):
            grant = request.credential
            assert grant.localpart is not None  # only approved grants reach token issuance
            session = self.store.start_session(
                localpart=grant.localpart,
                client_id=grant.client_id,
                device_id=grant.device_id,
                scope=grant.scope,
            )
            grant.status = GrantStatus.REDEEMED
        elif isinstance(request.refresh_token, Token):
            session = request.refresh_token.session
        else:  # pragma: no cover - only the two grants above are registered
            raise RuntimeError("token issued by an unknown grant")
        refresh = token.get("refresh_token")
        self.store.add_token(
            session,
            access_token=str(token["access_token"]),
            refresh_token=str(refresh) if refresh is not None else None,
            expires_in=int(token["expires_in"]),
        )

    def issue_session_tokens(self, session: Session, client: Client) -> dict[str, str | int]:
        """Tokens for a session created outside any grant (the dev-only direct login)."""
        token = self._bearer(grant_type="dev_login", client=client, scope=session.scope)
        self.store.add_token(
            session,
            access_token=str(token["access_token"]),
            refresh_token=str(token["refresh_token"]),
            expires_in=int(token["expires_in"]),
        )
        return token

    def respond(self, endpoint: str, request: FormRequest | JsonBodyRequest) -> OAuthResponse:
        """Run a registered endpoint (``device_authorization``, ``revocation`` …) on a parsed request."""
        response: OAuthResponse = self.create_endpoint_response(endpoint, request)  # type: ignore[no-untyped-call]
        return response

    def respond_token(self, request: FormRequest) -> OAuthResponse:
        """Run the token endpoint (every registered grant) on a parsed request."""
        response = self.create_token_response(request)
        assert isinstance(response, OAuthResponse)  # handle_response builds every response
        return response

    # -- Synapse as a client ---------------------------------------------------------------------------------

    def _authenticate_synapse(self, query_client: Any, request: OAuth2Request) -> ResourceServer | None:
        scheme, _, presented = (request.headers or {}).get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), self._synapse_secret.encode()):
            return self._resource_server
        return None


def _new_access_token(*, client: ClientMixin, grant_type: str, user: object, scope: str) -> str:
    # Prefixes in the style of MAS (``mat_``/``mar_``) make leaked tokens easy to recognise.
    return f"mat_{secrets.token_urlsafe(32)}"


def _new_refresh_token(*, client: ClientMixin, grant_type: str, user: object, scope: str) -> str:
    return f"mar_{secrets.token_urlsafe(32)}"


class MatrixDeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):
    """RFC 8628 §3.1: Matrix scopes, Crockford user codes, and only clients registered for the device grant."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: DevAuthorizationServer

    def authenticate_client(self, request: OAuth2Request) -> ClientMixin:
        client: ClientMixin = super().authenticate_client(request)  # type: ignore[no-untyped-call]
        # MAS answers ``unauthorized_client`` here when the client did not register the device grant
        # (matrix-authentication-service ``oauth2/device/authorize.rs``); Authlib itself does not check.
        if not client.check_grant_type(DEVICE_CODE_GRANT_TYPE):
            raise UnauthorizedClientError(f"the client is not registered for {DEVICE_CODE_GRANT_TYPE}")
        return client

    def create_endpoint_response(self, request: OAuth2Request) -> tuple[int, Any, Any]:
        # Authlib's own codes are fixed; ours come from the store, so the response is built here.
        self.authenticate_client(request)
        self.server.validate_requested_scope(request.payload.scope if request.payload else None)
        scope = parse_matrix_scope(request.payload.scope if request.payload else None)
        settings = self.server.settings
        grant = self.server.store.add_device_grant(
            client_id=request.client.get_client_id() if request.client else "",
            scope=str(scope),
            device_id=scope.device_id,
            lifetime=settings.device_code_lifetime,
            interval=settings.poll_interval,
        )
        verification_uri = self.get_verification_uri()
        body = {
            "device_code": grant.device_code,
            "user_code": grant.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={grant.user_code}",
            "expires_in": settings.device_code_lifetime,
            "interval": settings.poll_interval,
        }
        return (
            200,
            body,
            [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Pragma", "no-cache")],
        )

    def get_verification_uri(self) -> str:
        return self.server.settings.endpoint("link")


class MatrixDeviceCodeGrant(DeviceCodeGrant):
    """RFC 8628 §3.4/3.5 polling against the store; a device code can be redeemed once."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: DevAuthorizationServer

    def query_device_credential(self, device_code: str) -> DeviceGrant:
        grant = self.server.store.grant_by_device_code(device_code)
        if grant is None:
            raise InvalidGrantError("unknown device_code")
        if grant.status is GrantStatus.REDEEMED:
            raise InvalidGrantError("the device_code was already exchanged for a token")
        return grant

    def query_user_grant(self, user_code: str) -> tuple[str | None, bool] | None:
        grant = self.server.store.grant_by_user_code(user_code)
        if grant is None or grant.status is GrantStatus.PENDING:
            return None
        return grant.localpart, grant.status is GrantStatus.APPROVED

    def should_slow_down(self, credential: DeviceGrant) -> bool:
        now = self.server.store.clock()
        too_fast = credential.last_poll is not None and now - credential.last_poll < credential.interval
        credential.last_poll = now
        if too_fast:
            # RFC 8628 §3.5: the interval grows by 5 seconds for this and all later requests.
            credential.interval += 5
        return too_fast


class RotatingRefreshTokenGrant(RefreshTokenGrant):
    """RFC 6749 §6 with rotation: each refresh returns a new refresh token and retires the old pair."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: DevAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:  # type: ignore[override]
        token = self.server.store.token_by_refresh(refresh_token)
        return token if token is not None and token.refresh_usable() else None

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.session.localpart

    def revoke_old_credential(self, refresh_token: Token) -> None:  # type: ignore[override]
        refresh_token.refresh_revoked = True
        refresh_token.access_revoked = True


class OpenClientRegistrationEndpoint(ClientRegistrationEndpoint):
    """RFC 7591 registration open to anyone (as MSC2966 expects); public clients get no secret."""

    server: DevAuthorizationServer

    def authenticate_token(self, request: JsonBodyRequest) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        # Only the auth method is checked: clients such as Element X also register grant types this server
        # does not offer (``authorization_code``), and that must not make their registration fail.
        return {"token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS}

    def generate_client_info(self, request: JsonBodyRequest) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        data = request.payload.data if request.payload is not None else {}
        if isinstance(data, dict) and data.get("token_endpoint_auth_method") == "none":
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Client:
        return self.server.store.add_client(
            Client(
                client_id=client_info["client_id"],
                client_secret=client_info.get("client_secret"),
                # RFC 7591 §2: grant_types defaults to authorization_code alone.
                grant_types=tuple(client_metadata.get("grant_types") or ("authorization_code",)),
                token_endpoint_auth_method=client_metadata["token_endpoint_auth_method"],
                client_name=client_metadata.get("client_name"),
                client_uri=client_metadata.get("client_uri"),
                metadata=dict(client_metadata),
            )
        )


class SessionRevocationEndpoint(RevocationEndpoint):
    """RFC 7009: revoking either token of a session ends the whole session, as MAS does."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: DevAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.server.store.find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        self.server.store.end_session(token.session)


class SynapseIntrospectionEndpoint(IntrospectionEndpoint):
    """RFC 7662 for Synapse's MAS mode (``synapse/api/auth/mas.py``), authenticated with the shared secret.

    Only access tokens introspect as active: Synapse grants API access to whatever answers ``active`` with the
    API scope, so a refresh token must not.
    """

    CLIENT_AUTH_METHODS = (SYNAPSE_AUTH_METHOD,)
    server: DevAuthorizationServer

    def check_params(self, request: OAuth2Request, client: ClientMixin) -> None:
        if "token" not in request.form:
            raise InvalidRequestError("missing 'token'")

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.server.store.token_by_access(token_string)

    def check_permission(self, token: Token, client: ClientMixin, request: OAuth2Request) -> bool:
        return isinstance(client, ResourceServer)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        session = token.session
        user = self.server.store.users.get(session.localpart)
        now = self.server.store.clock()
        return {
            "active": True,
            "scope": session.scope,
            "client_id": session.client_id,
            "token_type": "access_token",
            "username": session.localpart,
            "sub": user.sub if user is not None else session.localpart,
            "device_id": session.device_id,
            "iss": self.server.settings.issuer,
            "iat": int(token.issued_at),
            "exp": int(token.expires_at),
            # Synapse ignores ``exp`` and reads MAS's relative ``expires_in`` to bound its introspection
            # cache.
            "expires_in": max(0, int(token.expires_at - now)),
        }
