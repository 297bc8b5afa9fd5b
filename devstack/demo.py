"""DEV ONLY: what ``qrlink demo`` (and tests of the ``qrlink`` CLI) need from a running development stack.

- :func:`create_demo_user`: a fresh user whose first device set up cross-signing, a key backup and secret
  storage, the way a real client does, so that it has secrets to hand to a new device.
- :func:`answer_verification_page`: a scripted browser that opens a verification URI, signs in with the user's
  password and presses *Approve* (or *Deny*), with plain HTTP requests against the stack's OAuth server.

Both need the ``devstack`` extra; :func:`create_demo_user` also needs ``e2ee`` (vodozemac).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from devstack.stack import DevStack

__all__ = ["DemoUser", "VerificationPageError", "answer_verification_page", "create_demo_user"]

_CSRF_FIELD = re.compile(r'name=csrf value="([^"]+)"')
_TITLE = re.compile(r"<h1>([^<]*)</h1>")


class VerificationPageError(RuntimeError):
    """The verification page did not end with the expected result; the message names the page's title."""


@dataclass(frozen=True)
class DemoUser:
    """A dev user and its signed-in first device. ``repr`` shows neither password, token nor recovery key."""

    localpart: str
    user_id: str
    device_id: str
    password: str = field(repr=False)
    access_token: str = field(repr=False)
    recovery_key: str = field(repr=False)
    """Unlocks the user's secret storage, which holds the cross-signing keys and the backup key."""


async def create_demo_user(stack: DevStack, *, localpart: str | None = None, device_id: str = "PHONE") -> DemoUser:
    """DEV ONLY: create ``localpart`` (default ``demo-<8 random hex digits>``) with a random password, sign it in
    as ``device_id`` and give it cross-signing, a key backup and secret storage from that device."""
    from qrlink_client.e2ee import E2eeHomeserver, OlmDevice, bootstrap_user

    localpart = localpart or f"demo-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    await stack.async_create_user(localpart, password)
    tokens = await stack.async_login_device(localpart, device_id)
    # Every part of the stack is on loopback: a configured proxy must not see this traffic.
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        homeserver = E2eeHomeserver(stack.homeserver_url, tokens.access_token, user_id=tokens.user_id, client=http)
        result = await bootstrap_user(homeserver, OlmDevice.generate(tokens.device_id))
    return DemoUser(
        localpart=localpart,
        user_id=tokens.user_id,
        device_id=tokens.device_id,
        password=password,
        access_token=tokens.access_token,
        recovery_key=result.recovery_key(),
    )


async def answer_verification_page(
    uri: str,
    *,
    localpart: str,
    password: str,
    action: Literal["approve", "deny"] = "approve",
    user_code: str | None = None,
    request_timeout: float = 15.0,
) -> None:
    """DEV ONLY: do what the user does in a browser at ``uri`` (``verification_uri_complete``, or
    ``verification_uri`` plus ``user_code``): submit the code with the user's credentials, then press the
    ``action`` button on the consent page. Raises :class:`VerificationPageError` unless the final page says the
    device was linked (approve) or the request denied (deny)."""
    code = user_code or parse_qs(urlsplit(uri).query).get("user_code", [""])[0]
    if not code:
        raise VerificationPageError("the verification URI carries no user_code; pass user_code=")
    async with httpx.AsyncClient(timeout=request_timeout, trust_env=False, follow_redirects=True) as browser:
        page = await browser.get(uri)
        _expect(page, 200)
        consent = await browser.post(
            page.url,
            data={"csrf": _csrf(page), "user_code": code, "username": localpart, "password": password},
        )
        _expect(consent, 200)
        outcome = await browser.post(
            urljoin(str(consent.url), "link/consent"),
            data={"csrf": _csrf(consent), "user_code": code, "action": action},
        )
        _expect(outcome, 200)
    expected = "Device linked" if action == "approve" else "Request denied"
    if _title(outcome) != expected:
        raise VerificationPageError(f"the verification page ended with {_title(outcome)!r}, not {expected!r}")


def _csrf(page: httpx.Response) -> str:
    match = _CSRF_FIELD.search(page.text)
    if match is None:
        raise VerificationPageError(f"the page {_title(page)!r} has no form to submit")
    return match.group(1)


def _title(page: httpx.Response) -> str:
    match = _TITLE.search(page.text)
    return match.group(1) if match else "(no title)"


def _expect(page: httpx.Response, status: int) -> None:
    if page.status_code != status:
        # The page's error text is shown, never the form values (the password, the user code).
        error = re.search(r"role=alert>([^<]*)<", page.text)
        detail = error.group(1) if error else _title(page)
        raise VerificationPageError(f"the verification page answered {page.status_code}: {detail}")
