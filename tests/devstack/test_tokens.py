"""Refresh with rotation (RFC 6749 §6) and revocation (RFC 7009), as Synapse sees them."""

from __future__ import annotations

from typing import Any

import pytest

from devstack import DevStack
from devstack.browser import Browser
from rendezvous.protocol import WHOAMI_PATH
from tests.devstack.flow import OAuthClient, bearer, device_path
from tests.support.urls import under

pytestmark = pytest.mark.synapse


def _signed_in(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> tuple[str, dict[str, Any]]:
    client_id, grant = oauth.start(device_id)
    with Browser() as browser:
        browser.approve(grant, *user)
    response = oauth.poll(client_id, grant["device_code"])
    assert response.status_code == 200, response.text
    return client_id, response.json()


def _whoami_status(stack: DevStack, oauth: OAuthClient, access_token: str) -> int:
    url = under(stack.homeserver_url, WHOAMI_PATH)
    return oauth.http.get(url, headers=bearer(access_token)).status_code


def test_refresh_returns_a_new_pair_that_synapse_accepts(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, first = _signed_in(oauth, user, device_id)

    response = oauth.refresh(client_id, first["refresh_token"])

    assert response.status_code == 200
    second = response.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"]
    assert _whoami_status(stack, oauth, second["access_token"]) == 200


def test_refresh_token_cannot_be_used_twice(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    client_id, first = _signed_in(oauth, user, device_id)
    oauth.refresh(client_id, first["refresh_token"])

    reused = oauth.refresh(client_id, first["refresh_token"])

    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


def test_rotated_refresh_token_chains(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    client_id, first = _signed_in(oauth, user, device_id)
    second = oauth.refresh(client_id, first["refresh_token"]).json()

    third = oauth.refresh(client_id, second["refresh_token"])

    assert third.status_code == 200


def test_refresh_by_another_client_is_refused(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    _, first = _signed_in(oauth, user, device_id)

    response = oauth.refresh(oauth.register(), first["refresh_token"])

    assert response.json()["error"] == "invalid_grant"


def test_revoked_access_token_is_rejected_by_synapse(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, tokens = _signed_in(oauth, user, device_id)
    assert _whoami_status(stack, oauth, tokens["access_token"]) == 200  # now in Synapse's introspection cache

    revoked = oauth.revoke(client_id, tokens["access_token"])

    assert revoked.status_code == 200
    assert _whoami_status(stack, oauth, tokens["access_token"]) == 401


def test_revoking_the_refresh_token_ends_the_session(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    client_id, tokens = _signed_in(oauth, user, device_id)

    oauth.revoke(client_id, tokens["refresh_token"], hint="refresh_token")

    assert oauth.refresh(client_id, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revocation_deletes_the_device_from_synapse(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    existing = stack.login_device(user[0], "EXISTING")
    client_id, tokens = _signed_in(oauth, user, device_id)

    oauth.revoke(client_id, tokens["access_token"])

    response = oauth.http.get(f"{stack.homeserver_url}{device_path(device_id)}", headers=bearer(existing.access_token))
    assert response.status_code == 404


def test_revoking_an_unknown_token_succeeds_per_rfc7009(oauth: OAuthClient) -> None:
    client_id = oauth.register()

    response = oauth.revoke(client_id, "mat_not-a-token")

    assert response.status_code == 200


def test_revocation_by_another_client_is_refused(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, tokens = _signed_in(oauth, user, device_id)

    response = oauth.revoke(oauth.register(), tokens["access_token"])

    assert response.json()["error"] == "invalid_grant"
    assert _whoami_status(stack, oauth, tokens["access_token"]) == 200
