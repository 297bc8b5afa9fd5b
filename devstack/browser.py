"""DEV ONLY: the user's browser on the stack's verification page, scripted with plain HTTP.

Real GETs and form POSTs with cookies kept and redirects followed, no JavaScript: what a person does on the
page, the way ``qrlink demo`` and the tests do it.

- :class:`Browser`: one page step at a time (open the link, sign in with the code, press a button); each step
  returns the page as it came, so tests can look at error pages too.
- :func:`answer_verification_page`: the whole visit, for async callers, checked: it raises
  :class:`VerificationPageError` unless the visit ended as asked.
- :class:`VerificationPage`: an ``open_verification_uri`` callback for ``grant_login`` that answers each URI it
  is given in the background (or only notes it).

Real Chromium against the same page is a test peer (``tests/peers/browser.py``), not part of the stack.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

if TYPE_CHECKING:
    from devstack.users import E2eeUser

__all__ = ["Browser", "VerificationPage", "VerificationPageError", "answer_verification_page"]

Action = Literal["approve", "deny"]

_CSRF_FIELD = re.compile(r'name=csrf value="([^"]+)"')
_TITLE = re.compile(r"<h1>([^<]*)</h1>")
_ALERT = re.compile(r"role=alert>([^<]*)<")
_SHOWN_USER_CODE = re.compile(r"<code id=user-code>([^<]*)</code>")
#: The title of the last page of a visit, by the button pressed.
_OUTCOME_TITLES = {"approve": "Device linked", "deny": "Request denied"}


class VerificationPageError(RuntimeError):
    """The verification page did not go as expected; the message names the page's title or error text, never
    the form values (the password, the user code)."""


def user_code_of(uri: str) -> str:
    """The ``user_code`` query parameter of a ``verification_uri_complete`` (empty if it has none)."""
    return parse_qs(urlsplit(uri).query).get("user_code", [""])[0]


def shown_user_code(consent_page: httpx.Response) -> str:
    """The user code the consent page shows (empty if it shows none), for comparing with the device's."""
    match = _SHOWN_USER_CODE.search(consent_page.text)
    return html.unescape(match.group(1)) if match else ""


def same_user_code(a: str, b: str) -> bool:
    """Whether two user codes are the same as a person compares them: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", a).upper() == re.sub(r"[\s-]", "", b).upper()


def page_title(page: httpx.Response) -> str:
    match = _TITLE.search(page.text)
    return match.group(1) if match else "(no title)"


def expect_status(page: httpx.Response, status: int = 200) -> httpx.Response:
    """``page`` if it has ``status``; otherwise :class:`VerificationPageError` with the page's error text."""
    if page.status_code != status:
        error = _ALERT.search(page.text)
        detail = error.group(1) if error else page_title(page)
        raise VerificationPageError(f"the verification page answered {page.status_code}: {detail}")
    return page


class Browser:
    """The user's browser on the verification page: real GETs and form POSTs, cookies kept, no JavaScript."""

    def __init__(self, *, timeout: float = 15.0) -> None:
        # Every part of the stack is on loopback: a configured proxy must not see this traffic.
        self.http = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=True)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def csrf(page: httpx.Response) -> str:
        """The CSRF token of the page's form."""
        match = _CSRF_FIELD.search(page.text)
        if match is None:
            raise VerificationPageError(f"the page {page_title(page)!r} has no form to submit")
        return match.group(1)

    def open_link(self, verification_uri_complete: str) -> httpx.Response:
        """GET the link; the page must load (200)."""
        return expect_status(self.http.get(verification_uri_complete))

    def sign_in_with_code(
        self, verification_uri_complete: str, user_code: str, username: str, password: str
    ) -> httpx.Response:
        """Open the page, submit code + credentials: the consent page (or an error page)."""
        page = self.open_link(verification_uri_complete)
        return self.http.post(
            page.url,
            data={
                "csrf": self.csrf(page),
                "user_code": user_code,
                "username": username,
                "password": password,
            },
        )

    def answer(self, consent_page: httpx.Response, user_code: str, action: str) -> httpx.Response:
        """Press Approve or Deny on the consent page (which must have loaded)."""
        expect_status(consent_page)
        return self.http.post(
            consent_page.url.join("link/consent"),
            data={"csrf": self.csrf(consent_page), "user_code": user_code, "action": action},
        )

    def approve(self, grant: dict[str, Any], username: str, password: str, action: str = "approve") -> httpx.Response:
        """The whole visit for a device authorization response ``grant``: the last page."""
        consent = self.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], username, password)
        return self.answer(consent, grant["user_code"], action)

    def visit(
        self, uri: str, user_code: str, username: str, password: str, action: str, *, think_s: float = 0.0
    ) -> httpx.Response:
        """The whole visit at ``uri`` (``verification_uri_complete``, or ``verification_uri`` with the code typed
        in): the last page, whatever it says. ``think_s``: seconds the person reads the consent page before
        pressing the button."""
        consent = self.sign_in_with_code(uri, user_code, username, password)
        if think_s > 0:
            time.sleep(think_s)
        return self.answer(consent, user_code, action)


async def answer_verification_page(
    uri: str,
    *,
    localpart: str,
    password: str,
    action: Action = "approve",
    user_code: str | None = None,
    request_timeout: float = 15.0,
    expected_user_code: str | None = None,
) -> str:
    """DEV ONLY: do what the user does in a browser at ``uri`` (``verification_uri_complete``, or
    ``verification_uri`` plus ``user_code``): submit the code with the user's credentials, then press the
    ``action`` button on the consent page. Raises :class:`VerificationPageError` unless the final page says the
    device was linked (approve) or the request denied (deny).

    Returns the user code the consent page showed. With ``expected_user_code`` (what the new device displays) a
    different code on the page is what a careful user refuses: the request is denied and
    :class:`VerificationPageError` raised."""
    code = user_code or user_code_of(uri)
    if not code:
        raise VerificationPageError("the verification URI carries no user_code; pass user_code=")

    def visit() -> tuple[httpx.Response, str, bool]:
        with Browser(timeout=request_timeout) as browser:
            consent = expect_status(browser.sign_in_with_code(uri, code, localpart, password))
            shown = shown_user_code(consent)
            refused = expected_user_code is not None and not same_user_code(shown, expected_user_code)
            return expect_status(browser.answer(consent, code, "deny" if refused else action)), shown, refused

    outcome, shown, refused = await asyncio.to_thread(visit)
    if refused:
        raise VerificationPageError("the consent page shows another user code than the device: denied")
    expected = _OUTCOME_TITLES[action]
    if page_title(outcome) != expected:
        raise VerificationPageError(f"the verification page ended with {page_title(outcome)!r}, not {expected!r}")
    return shown


class VerificationPage:
    """The user's browser at the verification URI the existing device opens (``open_verification_uri``).

    :meth:`open` notes the URI and, unless the action is ``ignore``, answers the page in the background with
    :class:`Browser`; :attr:`answers` holds those visits, each ending with the last page it saw. ``think_s``:
    seconds the person spends on the consent page before answering it (a script answers at once).
    """

    def __init__(
        self, user: E2eeUser, action: Literal["approve", "deny", "ignore"] = "approve", *, think_s: float = 0.0
    ) -> None:
        self.user = user
        self.action = action
        self.think_s = think_s
        self.opened: list[str] = []
        self.answers: list[asyncio.Task[httpx.Response]] = []

    async def open(self, uri: str) -> bool:
        self.opened.append(uri)
        if self.action != "ignore":
            self.answers.append(asyncio.create_task(asyncio.to_thread(self._answer, uri)))
        return True

    def _answer(self, uri: str) -> httpx.Response:
        with Browser() as browser:
            return browser.visit(
                uri, user_code_of(uri), self.user.localpart, self.user.password, self.action, think_s=self.think_s
            )
