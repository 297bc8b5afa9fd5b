"""The rendezvous server's ``authenticated`` Gen-2 create policy against the stack's real Synapse ``whoami``.

tests/server/test_create_policy.py covers the policy against a stand-in homeserver; here the tokens are real
ones, issued by the stack's OAuth server and checked by Synapse (which introspects them there): a token of a
signed-in device, the same token after the device logged out (RFC 7009 revocation, which is how an OAuth
client logs out), and a token nobody issued. The rendezvous server keeps no answer cache here
(``token_cache_seconds=0``), so every create asks Synapse.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack import DevStack
from devstack.browser import Browser
from rendezvous.protocol import WHOAMI_PATH
from tests.devstack.flow import OAuthClient, bearer
from tests.server.helpers import GEN2, assert_matrix_error
from tests.support.server import serve_settings
from tests.support.urls import under

pytestmark = pytest.mark.synapse


@pytest.fixture(scope="module")
def rendezvous(stack: DevStack) -> Iterator[str]:
    with serve_settings(
        gen2_create_policy="authenticated", homeserver_url=stack.homeserver_url, token_cache_seconds=0
    ) as base_url:
        yield base_url


def _signed_in(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> tuple[str, dict[str, Any]]:
    client_id, grant = oauth.start(device_id)
    with Browser() as browser:
        browser.approve(grant, *user)
    response = oauth.poll(client_id, grant["device_code"])
    assert response.status_code == 200, response.text
    return client_id, response.json()


def _create(rendezvous: str, token: str) -> httpx.Response:
    return httpx.post(f"{rendezvous}{GEN2}", json={"data": ""}, headers=bearer(token), timeout=15)


def test_token_of_a_signed_in_device_may_create(
    rendezvous: str, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, tokens = _signed_in(oauth, user, device_id)

    response = _create(rendezvous, tokens["access_token"])

    assert response.status_code == 200, response.text
    assert response.json()["sequence_token"] == "1"
    discovery = httpx.get(f"{rendezvous}{GEN2}", headers=bearer(tokens["access_token"]), timeout=15)
    assert discovery.json()["create_available"] is True


def test_token_of_a_logged_out_device_is_refused(
    stack: DevStack, rendezvous: str, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, tokens = _signed_in(oauth, user, device_id)
    assert _create(rendezvous, tokens["access_token"]).status_code == 200

    assert oauth.revoke(client_id, tokens["access_token"]).status_code == 200

    whoami = under(stack.homeserver_url, WHOAMI_PATH)
    assert oauth.http.get(whoami, headers=bearer(tokens["access_token"])).status_code == 401
    assert_matrix_error(_create(rendezvous, tokens["access_token"]), 401, "M_UNKNOWN_TOKEN")


def test_token_nobody_issued_is_refused(rendezvous: str) -> None:
    forged = f"mat_{secrets.token_urlsafe(24)}"

    assert_matrix_error(_create(rendezvous, forged), 401, "M_UNKNOWN_TOKEN")
    discovery = httpx.get(f"{rendezvous}{GEN2}", headers=bearer(forged), timeout=15)
    assert_matrix_error(discovery, 401, "M_UNKNOWN_TOKEN")
