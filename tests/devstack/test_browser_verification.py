"""The verification page in a real headless Chromium (Debian's ``chromium``, driven by playwright-core).

The device side is plain HTTP (client registration, device authorization, token polling, as in ``flow.py``); the
user's side is the real browser: it follows the page's own forms, keeps the CSRF and sign-in cookies as Chromium
does over plain HTTP on 127.0.0.1, and submits with the buttons a person would press.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import DevStack
from rendezvous.protocol import WHOAMI_PATH
from tests.devstack.flow import OAuthClient, bearer
from tests.peers.browser import browser, browser_driver, chromium
from tests.peers.node import NodeDriver, node_packages
from tests.support.urls import under

__all__ = ["browser", "browser_driver", "chromium", "node_packages"]  # fixtures used by this module

pytestmark = [pytest.mark.node, pytest.mark.synapse, pytest.mark.timeout(120)]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sign_in(browser: NodeDriver, user: tuple[str, str]) -> dict[str, Any]:
    """Fill in the credentials on the open verification page and press Continue: the consent page."""
    browser.call("fill", selector="#username", value=user[0])
    browser.call("fill", selector="#password", value=user[1])
    return browser.call("submit", selector="button[type=submit]")


def open_consent(browser: NodeDriver, grant: dict[str, Any], user: tuple[str, str]) -> dict[str, Any]:
    """Open ``verification_uri_complete`` (code prefilled) and sign in."""
    page = browser.call("goto", url=grant["verification_uri_complete"])
    assert page["status"] == 200, page
    return sign_in(browser, user)


def test_verification_uri_complete_prefills_the_user_code(
    browser: NodeDriver, oauth: OAuthClient, device_id: str
) -> None:
    _, grant = oauth.start(device_id)

    browser.call("goto", url=grant["verification_uri_complete"])

    assert browser.call("value", selector="#user_code")["value"] == grant["user_code"]


def test_consent_page_names_the_device_and_the_account(
    browser: NodeDriver, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, grant = oauth.start(device_id)

    consent = open_consent(browser, grant, user)

    assert (consent["status"], consent["title"]) == (200, "Allow this device?")
    assert device_id in consent["text"] and f"@{user[0]}:localhost" in consent["text"]


def test_approving_in_chromium_lets_the_device_fetch_working_tokens(
    stack: DevStack, browser: NodeDriver, oauth: OAuthClient, user: tuple[str, str], device_id: str, http: httpx.Client
) -> None:
    client_id, grant = oauth.start(device_id)
    open_consent(browser, grant, user)

    done = browser.call("submit", selector="button[value=approve]")
    tokens = oauth.poll(client_id, grant["device_code"])
    whoami = http.get(under(stack.homeserver_url, WHOAMI_PATH), headers=bearer(tokens.json()["access_token"]))

    assert (done["status"], done["title"]) == (200, "Device linked")
    assert tokens.status_code == 200, tokens.text
    assert whoami.json() == {"user_id": f"@{user[0]}:localhost", "device_id": device_id, "is_guest": False}


def test_denying_in_chromium_makes_the_token_poll_answer_access_denied(
    browser: NodeDriver, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, grant = oauth.start(device_id)
    open_consent(browser, grant, user)

    done = browser.call("submit", selector="button[value=deny]")
    answer = oauth.poll(client_id, grant["device_code"])

    assert (done["status"], done["title"]) == (200, "Request denied")
    assert answer.json()["error"] == "access_denied"


def test_user_code_typed_at_the_bare_verification_uri_reaches_approval(
    browser: NodeDriver, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    client_id, grant = oauth.start(device_id)
    page = browser.call("goto", url=grant["verification_uri"])
    assert browser.call("value", selector="#user_code")["value"] == ""

    browser.call("fill", selector="#user_code", value=grant["user_code"])
    consent = sign_in(browser, user)
    browser.call("submit", selector="button[value=approve]")

    assert page["status"] == 200
    assert device_id in consent["text"]
    assert oauth.poll(client_id, grant["device_code"]).status_code == 200


def test_approval_page_screenshot_is_a_png(
    browser: NodeDriver, oauth: OAuthClient, user: tuple[str, str], device_id: str, tmp_path: Path
) -> None:
    _, grant = oauth.start(device_id)
    open_consent(browser, grant, user)
    path = tmp_path / "approval.png"

    written = browser.call("screenshot", path=str(path))

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) == written["bytes"] > 1000
