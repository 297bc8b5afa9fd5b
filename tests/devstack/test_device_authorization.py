"""Registration (RFC 7591) and device authorization requests (RFC 8628 §3.1/3.2)."""

from __future__ import annotations

import pytest

from devstack.oauth.models import USER_CODE_ALPHABET
from tests.devstack.flow import OAuthClient, stable_scope

pytestmark = pytest.mark.synapse


def test_public_client_registration_returns_no_secret(oauth: OAuthClient) -> None:
    response = oauth.http.post(
        oauth.metadata["registration_endpoint"],
        json={"client_name": "x", "token_endpoint_auth_method": "none", "grant_types": ["refresh_token"]},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["client_id"]
    assert "client_secret" not in body
    assert body["token_endpoint_auth_method"] == "none"


def test_registration_with_non_json_body_is_invalid_client_metadata(oauth: OAuthClient) -> None:
    response = oauth.http.post(oauth.metadata["registration_endpoint"], content=b"not json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


def test_device_authorization_response_has_rfc8628_fields(oauth: OAuthClient, device_id: str) -> None:
    client_id = oauth.register()

    response = oauth.authorize_device(client_id, stable_scope(device_id))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert len(body["user_code"]) == 8
    assert set(body["user_code"]) <= set(USER_CODE_ALPHABET)
    assert body["verification_uri"] == oauth.metadata["issuer"] + "link"
    assert body["verification_uri_complete"] == f"{body['verification_uri']}?user_code={body['user_code']}"
    assert body["expires_in"] > 0
    assert body["interval"] == 1
    assert len(body["device_code"]) >= 32


def test_client_not_registered_for_device_grant_gets_unauthorized_client(oauth: OAuthClient, device_id: str) -> None:
    client_id = oauth.register(grant_types=("refresh_token",))

    response = oauth.authorize_device(client_id, stable_scope(device_id))

    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_unknown_client_gets_invalid_client(oauth: OAuthClient, device_id: str) -> None:
    response = oauth.authorize_device("no-such-client", stable_scope(device_id))

    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "scope",
    [
        "urn:matrix:client:api:*",
        "urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B",
        "urn:matrix:client:device:A",
        "urn:matrix:client:api:* urn:matrix:client:device:A email",
    ],
    ids=["no-device", "two-devices", "no-api", "unknown-scope"],
)
def test_scope_without_exactly_one_device_and_api_access_is_invalid_scope(oauth: OAuthClient, scope: str) -> None:
    client_id = oauth.register()

    response = oauth.authorize_device(client_id, scope)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
