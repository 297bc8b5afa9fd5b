"""A small OAuth 2.0 authorization server for Synapse's MAS mode, built on Authlib (development only).

It offers what a Matrix client needs to sign in a new device with the device authorization grant (RFC 8628)
and what Synapse 1.163 needs to delegate authentication to it (metadata, introspection, ``/_synapse/mas``
provisioning).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from devstack.oauth.accounts import Accounts, ApprovalError, DeviceTokens, InvalidUser
from devstack.oauth.app import create_app, server_metadata
from devstack.oauth.models import OAuthStore
from devstack.oauth.server import DevAuthorizationServer, OAuthSettings
from devstack.oauth.synapse_admin import ProvisioningError, SynapseAdminClient

__all__ = [
    "Accounts",
    "ApprovalError",
    "DeviceTokens",
    "InvalidUser",
    "OAuthService",
    "OAuthSettings",
    "ProvisioningError",
    "build_oauth_service",
    "server_metadata",
]


@dataclass(frozen=True)
class OAuthService:
    """One OAuth server: the Authlib engine, the account operations and the ASGI app serving both."""

    server: DevAuthorizationServer
    accounts: Accounts
    app: Starlette


def build_oauth_service(
    settings: OAuthSettings,
    *,
    homeserver_url: str,
    server_name: str,
    synapse_secret: str,
    admin_token: str,
) -> OAuthService:
    """Wire store, Authlib server, Synapse admin client and HTTP app together."""
    server = DevAuthorizationServer(OAuthStore(), settings, synapse_secret)
    accounts = Accounts(server, SynapseAdminClient(homeserver_url, synapse_secret), server_name)
    return OAuthService(server, accounts, create_app(server, accounts, admin_token=admin_token))
