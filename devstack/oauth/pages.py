"""Server-rendered HTML for the verification and account pages: plain forms, no JavaScript.

Every value that reaches HTML goes through :func:`html.escape`; every form carries the CSRF token.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from devstack.oauth.models import Client, DeviceGrant, Session

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1d22}
h1{font-size:1.4rem} .dev{background:#fff4ce;border:1px solid #e0c45c;padding:.4rem .6rem;font-size:.85rem}
label{display:block;margin:.8rem 0 .2rem} input[type=text],input[type=password]{width:100%;padding:.5rem;
font-size:1rem;box-sizing:border-box} button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font-size:1rem}
.error{color:#a4000f} code{background:#f2f2f2;padding:.1rem .3rem;word-break:break-all} dt{font-weight:600}
dd{margin:0 0 .6rem 0} table{border-collapse:collapse;width:100%} td{padding:.3rem;border-top:1px solid #ddd}
""".strip()


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<p class=dev>Development stack: not for real accounts.</p>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )


def _csrf(token: str) -> str:
    return f'<input type=hidden name=csrf value="{escape(token)}">'


def _error(message: str | None) -> str:
    return f"<p class=error role=alert>{escape(message)}</p>" if message else ""


def _credentials(username: str = "") -> str:
    return (
        f"<label for=username>Username</label><input type=text id=username name=username "
        f'value="{escape(username)}" autocomplete=username required>'
        "<label for=password>Password</label><input type=password id=password name=password "
        "autocomplete=current-password required>"
    )


def link_form(*, user_code: str, csrf: str, signed_in_as: str | None, error: str | None = None) -> str:
    """Step 1: the user code (prefilled from ``verification_uri_complete``) and, if needed, sign-in."""
    who = (
        f"<p>Signed in as <code>{escape(signed_in_as)}</code>.</p>"
        if signed_in_as
        else "<p>Sign in to link the device.</p>" + _credentials()
    )
    return _page(
        "Link a device",
        _error(error)
        + '<form method=post action="link">'
        + _csrf(csrf)
        + "<label for=user_code>Code shown on the device</label>"
        + f'<input type=text id=user_code name=user_code value="{escape(user_code)}" autocomplete=off '
        + "autocapitalize=characters required>"
        + who
        + "<button type=submit>Continue</button></form>",
    )


def consent(*, grant: DeviceGrant, client: Client | None, user_id: str, csrf: str) -> str:
    """Step 2: what is asking for access, as which device, and the user code the device must be showing;
    approve or deny."""
    name = client.display_name if client else grant.client_id
    client_uri = (
        f'<dd><a href="{escape(client.client_uri)}">{escape(client.client_uri)}</a></dd>'
        if client and client.client_uri
        else ""
    )
    return _page(
        "Allow this device?",
        "<dl>"
        f"<dt>Application</dt><dd>{escape(name)}</dd>{client_uri}"
        "<dt>Code shown on the device</dt>"
        f"<dd><code id=user-code>{escape(grant.user_code)}</code> (approve only if the device shows the same code)</dd>"
        f"<dt>Device ID</dt><dd><code>{escape(grant.device_id)}</code></dd>"
        f"<dt>Account</dt><dd><code>{escape(user_id)}</code></dd>"
        f"<dt>Access</dt><dd><code>{escape(grant.scope)}</code></dd>"
        "</dl>"
        '<form method=post action="link/consent">'
        + _csrf(csrf)
        + f'<input type=hidden name=user_code value="{escape(grant.user_code)}">'
        + "<button type=submit name=action value=approve>Approve</button>"
        + "<button type=submit name=action value=deny>Deny</button></form>",
    )


def result(title: str, message: str, *, status_error: bool = False) -> str:
    """A final page after approving, denying or failing."""
    text = _error(message) if status_error else f"<p>{escape(message)}</p>"
    return _page(title, text)


def account_login(*, csrf: str, action: str, error: str | None = None) -> str:
    """Sign-in form for the account page."""
    return _page(
        "Sign in",
        _error(error)
        + '<form method=post action="account/login">'
        + _csrf(csrf)
        + f'<input type=hidden name=action value="{escape(action)}">'
        + _credentials()
        + "<button type=submit>Sign in</button></form>",
    )


def account(
    *,
    user_id: str,
    sessions: Iterable[Session],
    csrf: str,
    action: str,
    message: str | None = None,
) -> str:
    """The account page (``account_management_uri``): sessions, and the cross-signing reset action."""
    rows = "".join(
        f"<tr><td><code>{escape(s.device_id)}</code></td><td>{escape(s.client_id)}</td><td>"
        '<form method=post action="account/sessions/end">'
        + _csrf(csrf)
        + f'<input type=hidden name=session_id value="{escape(s.session_id)}">'
        + "<button type=submit>Sign out</button></form></td></tr>"
        for s in sessions
    )
    reset = ""
    if action == "org.matrix.cross_signing_reset":
        reset = (
            "<h2>Reset cross-signing</h2><p>Allow your client to replace your cross-signing keys.</p>"
            '<form method=post action="account/cross_signing_reset">'
            + _csrf(csrf)
            + "<button type=submit>Allow reset</button></form>"
        )
    body = (
        (f"<p>{escape(message)}</p>" if message else "")
        + f"<p>Signed in as <code>{escape(user_id)}</code>.</p>"
        + reset
        + "<h2>Signed-in devices</h2>"
        + (f"<table>{rows}</table>" if rows else "<p>None.</p>")
    )
    return _page("Your account", body)
