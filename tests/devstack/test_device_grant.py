"""The device authorization grant end to end: browser approval, polling errors, tokens Synapse accepts."""

from __future__ import annotations

import time

import httpx
import pytest

from devstack import DevStack
from devstack.browser import Browser
from rendezvous.protocol import WHOAMI_PATH
from tests.devstack.flow import OAuthClient, bearer, device_path, unstable_scope
from tests.support.urls import under

pytestmark = pytest.mark.synapse


def test_approved_grant_gives_a_token_synapse_accepts_for_that_user_and_device(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, grant = oauth.start(device_id)
    pending = oauth.poll(client_id, grant["device_code"])
    with Browser() as browser:
        approved = browser.approve(grant, *user)

    token = oauth.poll(client_id, grant["device_code"])

    assert pending.json()["error"] == "authorization_pending"
    assert approved.status_code == 200
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    assert body["expires_in"] > 0
    assert body["scope"].split() == ["urn:matrix:client:api:*", f"urn:matrix:client:device:{device_id}"]
    whoami = oauth.http.get(under(stack.homeserver_url, WHOAMI_PATH), headers=bearer(body["access_token"]))
    assert whoami.json() == {"user_id": f"@{user[0]}:localhost", "is_guest": False, "device_id": device_id}


def test_unstable_msc2967_scope_is_granted_like_the_stable_one(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, grant = oauth.start(device_id, scope=unstable_scope(device_id))
    with Browser() as browser:
        browser.approve(grant, *user)

    token = oauth.poll(client_id, grant["device_code"]).json()

    whoami = oauth.http.get(under(stack.homeserver_url, WHOAMI_PATH), headers=bearer(token["access_token"]))
    assert whoami.json()["device_id"] == device_id


def test_device_is_404_before_approval_and_200_after(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    existing = stack.login_device(user[0], "EXISTING")
    url = f"{stack.homeserver_url}{device_path(device_id)}"
    _, grant = oauth.start(device_id)

    before = oauth.http.get(url, headers=bearer(existing.access_token))
    with Browser() as browser:
        browser.approve(grant, *user)
    after = oauth.http.get(url, headers=bearer(existing.access_token))

    assert before.status_code == 404
    assert after.status_code == 200
    assert after.json()["device_id"] == device_id


def test_denied_grant_polls_access_denied_with_http_400(
    oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, grant = oauth.start(device_id)
    with Browser() as browser:
        denied_page = browser.approve(grant, *user, action="deny")

    response = oauth.poll(client_id, grant["device_code"])

    assert "denied" in denied_page.text
    # RFC 8628 §3.5 errors follow RFC 6749 §5.2: HTTP 400. MAS answers 403 here (and for pending/expired).
    assert response.status_code == 400
    assert response.json()["error"] == "access_denied"


def test_denied_grant_leaves_no_device_in_synapse(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    existing = stack.login_device(user[0], "EXISTING")
    _, grant = oauth.start(device_id)
    with Browser() as browser:
        browser.approve(grant, *user, action="deny")

    response = oauth.http.get(f"{stack.homeserver_url}{device_path(device_id)}", headers=bearer(existing.access_token))

    assert response.status_code == 404


def test_polling_faster_than_the_interval_gets_slow_down(oauth: OAuthClient, device_id: str) -> None:
    client_id, grant = oauth.start(device_id)

    first = oauth.poll(client_id, grant["device_code"])
    second = oauth.poll(client_id, grant["device_code"])

    assert first.json()["error"] == "authorization_pending"
    assert second.status_code == 400
    assert second.json()["error"] == "slow_down"


def test_polling_at_the_interval_stays_authorization_pending(oauth: OAuthClient, device_id: str) -> None:
    client_id, grant = oauth.start(device_id)

    first = oauth.poll(client_id, grant["device_code"])
    time.sleep(grant["interval"] + 0.1)
    second = oauth.poll(client_id, grant["device_code"])

    assert first.json()["error"] == "authorization_pending"
    assert second.json()["error"] == "authorization_pending"


def test_device_code_is_redeemed_only_once(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    client_id, grant = oauth.start(device_id)
    with Browser() as browser:
        browser.approve(grant, *user)
    first = oauth.poll(client_id, grant["device_code"])

    second = oauth.poll(client_id, grant["device_code"])

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def test_device_code_of_another_client_is_refused(oauth: OAuthClient, device_id: str) -> None:
    _, grant = oauth.start(device_id)
    other_client = oauth.register()

    response = oauth.poll(other_client, grant["device_code"])

    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_refresh_token_is_not_an_access_token_for_synapse(
    stack: DevStack, http: httpx.Client, user: tuple[str, str], device_id: str
) -> None:
    tokens = stack.login_device(user[0], device_id)

    response = http.get(under(stack.homeserver_url, WHOAMI_PATH), headers=bearer(tokens.refresh_token))

    assert response.status_code == 401
    assert response.json()["errcode"] == "M_UNKNOWN_TOKEN"
