"""The verification and account pages: plain HTML forms, CSRF-protected, working without JavaScript."""

from __future__ import annotations

import pytest

from devstack import DevStack
from devstack.browser import Browser
from tests.devstack.flow import OAuthClient

pytestmark = pytest.mark.synapse


def test_verification_page_prefills_the_user_code(oauth: OAuthClient, device_id: str) -> None:
    _, grant = oauth.start(device_id)

    with Browser() as browser:
        page = browser.open_link(grant["verification_uri_complete"])

    assert f'name=user_code value="{grant["user_code"]}"' in page.text
    assert "name=password" in page.text


def test_verification_pages_contain_no_script(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    _, grant = oauth.start(device_id)

    with Browser() as browser:
        link = browser.open_link(grant["verification_uri_complete"])
        consent = browser.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], *user)
        done = browser.answer(consent, grant["user_code"], "approve")

    assert all("<script" not in page.text.lower() for page in (link, consent, done))


def test_consent_page_shows_client_and_device(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    _, grant = oauth.start(device_id)

    with Browser() as browser:
        consent = browser.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], *user)

    assert consent.status_code == 200
    assert "qrlink test device" in consent.text
    assert device_id in consent.text
    assert f"@{user[0]}:localhost" in consent.text


def test_consent_page_shows_the_user_code_the_device_displays(
    oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, grant = oauth.start(device_id)
    typed = f"{grant['user_code'][:4]}-{grant['user_code'][4:]}".lower()

    with Browser() as browser:
        # Typed by hand at the bare URI: the page still shows the code as the device displays it.
        consent = browser.sign_in_with_code(grant["verification_uri"], typed, *user)

    assert f"<code id=user-code>{grant['user_code']}</code>" in consent.text
    assert "Code shown on the device" in consent.text


def test_user_code_is_accepted_in_lower_case_with_a_dash(
    oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, grant = oauth.start(device_id)
    typed = f"{grant['user_code'][:4]}-{grant['user_code'][4:]}".lower()

    with Browser() as browser:
        consent = browser.sign_in_with_code(grant["verification_uri"], typed, *user)

    assert consent.status_code == 200
    assert device_id in consent.text


def test_wrong_password_is_refused(oauth: OAuthClient, user: tuple[str, str], device_id: str) -> None:
    _, grant = oauth.start(device_id)

    with Browser() as browser:
        page = browser.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], user[0], "wrong")

    assert page.status_code == 401
    assert "Approve" not in page.text


def test_unknown_user_code_is_refused(user: tuple[str, str], stack: DevStack) -> None:
    with Browser() as browser:
        page = browser.sign_in_with_code(f"{stack.issuer}link", "ZZZZZZZZ", *user)

    assert page.status_code == 404


def test_form_post_without_the_csrf_cookie_is_refused(
    stack: DevStack, oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, grant = oauth.start(device_id)
    with Browser() as browser:
        token = browser.csrf(browser.open_link(grant["verification_uri_complete"]))
    with Browser() as other_site:  # has the token text but not the cookie, as a cross-site form would
        page = other_site.http.post(
            f"{stack.issuer}link",
            data={"csrf": token, "user_code": grant["user_code"], "username": user[0], "password": user[1]},
        )

    assert page.status_code == 403


def test_consent_without_signing_in_is_refused(stack: DevStack, oauth: OAuthClient, device_id: str) -> None:
    _, grant = oauth.start(device_id)

    with Browser() as browser:
        token = browser.csrf(browser.open_link(grant["verification_uri_complete"]))
        page = browser.http.post(
            f"{stack.issuer}link/consent",
            data={"csrf": token, "user_code": grant["user_code"], "action": "approve"},
        )

    assert page.status_code == 403


def test_signed_in_browser_only_needs_the_code_next_time(
    oauth: OAuthClient, user: tuple[str, str], device_id: str
) -> None:
    _, first = oauth.start(device_id)
    _, second = oauth.start(device_id + "2")

    with Browser() as browser:
        browser.approve(first, *user)
        page = browser.open_link(second["verification_uri_complete"])

    assert f"Signed in as <code>@{user[0]}:localhost</code>" in page.text
    assert "name=password" not in page.text


def test_account_page_lists_and_signs_out_devices(stack: DevStack, user: tuple[str, str], device_id: str) -> None:
    stack.login_device(user[0], device_id)
    with Browser() as browser:
        login = browser.http.get(f"{stack.issuer}account")
        account = browser.http.post(
            f"{stack.issuer}account/login",
            data={"csrf": browser.csrf(login), "action": "", "username": user[0], "password": user[1]},
        )
        session_id = account.text.split('name=session_id value="', 1)[1].split('"', 1)[0]
        after = browser.http.post(
            f"{stack.issuer}account/sessions/end",
            data={"csrf": browser.csrf(account), "session_id": session_id},
        )

    assert device_id in account.text
    assert f"Signed out device {device_id}" in after.text
    assert "<table>" not in after.text
