"""Discovery: Synapse serves our issuer's metadata to clients, with what the device grant needs."""

from __future__ import annotations

import httpx
import pytest

from devstack import DevStack
from tests.devstack.flow import DEVICE_GRANT

pytestmark = pytest.mark.synapse


def test_synapse_auth_metadata_advertises_the_device_grant(stack: DevStack, http: httpx.Client) -> None:
    metadata = http.get(f"{stack.homeserver_url}_matrix/client/v1/auth_metadata").json()

    assert metadata["issuer"] == stack.issuer
    assert DEVICE_GRANT in metadata["grant_types_supported"]
    assert "refresh_token" in metadata["grant_types_supported"]
    assert metadata["device_authorization_endpoint"] == f"{stack.issuer}oauth2/device"
    assert metadata["token_endpoint"] == f"{stack.issuer}oauth2/token"
    assert metadata["registration_endpoint"] == f"{stack.issuer}oauth2/registration"
    assert metadata["revocation_endpoint"] == f"{stack.issuer}oauth2/revoke"


def test_unstable_auth_metadata_path_serves_the_same_document(stack: DevStack, http: httpx.Client) -> None:
    stable = http.get(f"{stack.homeserver_url}_matrix/client/v1/auth_metadata").json()
    unstable = http.get(f"{stack.homeserver_url}_matrix/client/unstable/org.matrix.msc2965/auth_metadata")

    assert unstable.json() == stable


def test_rfc8414_and_openid_discovery_documents_are_identical(stack: DevStack, http: httpx.Client) -> None:
    oauth = http.get(f"{stack.issuer}.well-known/oauth-authorization-server").json()
    openid = http.get(f"{stack.issuer}.well-known/openid-configuration").json()

    assert oauth == openid
    assert oauth["account_management_uri"] == f"{stack.issuer}account"
    assert oauth["introspection_endpoint"] == f"{stack.issuer}oauth2/introspect"
    assert {"urn:matrix:client:api:*", "urn:matrix:org.matrix.msc2967.client:api:*"} <= set(oauth["scopes_supported"])
