"""The HTTP skin of the development OAuth server (Starlette).

Routes translate HTTP into calls on :class:`DevAuthorizationServer` (protocol endpoints) and :class:`Accounts`
(pages and the dev-only admin API). Paths follow MAS where Synapse depends on them (``/oauth2/introspect`` and
``/.well-known/openid-configuration`` below ``matrix_authentication_service.endpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from devstack.oauth import pages
from devstack.oauth.accounts import Accounts, ApprovalError, InvalidUser
from devstack.oauth.models import GrantStatus, User
from devstack.oauth.scopes import SCOPES_SUPPORTED, InvalidMatrixScope
from devstack.oauth.server import (
    CLIENT_AUTH_METHODS,
    GRANT_TYPES_SUPPORTED,
    DevAuthorizationServer,
    FormRequest,
    JsonBodyRequest,
    OAuthResponse,
)
from devstack.oauth.synapse_admin import ProvisioningError

SESSION_COOKIE = "devstack_session"
CSRF_COOKIE = "devstack_csrf"
ADMIN_PREFIX = "/_devstack/admin"
CROSS_SIGNING_RESET = "org.matrix.cross_signing_reset"


def server_metadata(server: DevAuthorizationServer) -> dict[str, Any]:
    """RFC 8414 / OpenID discovery document; Synapse requires ``issuer`` and ``account_management_uri``."""
    s = server.settings
    return {
        "issuer": s.issuer,
        "account_management_uri": s.endpoint("account"),
        "account_management_actions_supported": [CROSS_SIGNING_RESET, "org.matrix.sessions_list"],
        "device_authorization_endpoint": s.endpoint("oauth2/device"),
        "token_endpoint": s.endpoint("oauth2/token"),
        "registration_endpoint": s.endpoint("oauth2/registration"),
        "revocation_endpoint": s.endpoint("oauth2/revoke"),
        "introspection_endpoint": s.endpoint("oauth2/introspect"),
        "grant_types_supported": GRANT_TYPES_SUPPORTED,
        "response_types_supported": [],
        "scopes_supported": SCOPES_SUPPORTED,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
    }


class _Browser:
    """Who the browser is signed in as, and its CSRF token (double-submit cookie)."""

    def __init__(self) -> None:
        self._signed_in: dict[str, str] = {}  # browser session id -> localpart

    def user(self, request: Request, accounts: Accounts) -> User | None:
        localpart = self._signed_in.get(request.cookies.get(SESSION_COOKIE, ""))
        return accounts.store.users.get(localpart) if localpart else None

    def sign_in(self, response: Response, user: User) -> None:
        browser_session = secrets.token_urlsafe(24)
        self._signed_in[browser_session] = user.localpart
        response.set_cookie(SESSION_COOKIE, browser_session, httponly=True, samesite="lax")

    @staticmethod
    def csrf_token(request: Request) -> str:
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)

    @staticmethod
    def html(request: Request, content: str, csrf: str, status_code: int = 200) -> HTMLResponse:
        response = HTMLResponse(content, status_code=status_code, headers={"Cache-Control": "no-store"})
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    @staticmethod
    def csrf_ok(request: Request, form: dict[str, str]) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), form.get("csrf", "").encode())


def create_app(server: DevAuthorizationServer, accounts: Accounts, *, admin_token: str) -> Starlette:
    """The ASGI app: protocol endpoints, verification and account pages, the dev-only admin API."""
    browser = _Browser()

    async def _form(request: Request) -> dict[str, str]:
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}

    def _oauth(response: OAuthResponse) -> JSONResponse:
        return JSONResponse(response.body, status_code=response.status, headers=dict(response.headers))

    async def _form_request(request: Request) -> FormRequest:
        return FormRequest(request.method, str(request.url), request.headers, await _form(request))

    # -- protocol endpoints ----------------------------------------------------------------------------------

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(server_metadata(server))

    async def registration(request: Request) -> JSONResponse:
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return JSONResponse(
                {"error": "invalid_client_metadata", "error_description": "body must be a JSON object"},
                status_code=400,
            )
        json_request = JsonBodyRequest(str(request.url), request.headers, data)
        return _oauth(server.respond("client_registration", json_request))

    async def device_authorization(request: Request) -> JSONResponse:
        return _oauth(server.respond("device_authorization", await _form_request(request)))

    async def token(request: Request) -> JSONResponse:
        return _oauth(server.respond_token(await _form_request(request)))

    async def revoke(request: Request) -> JSONResponse:
        response = server.respond("revocation", await _form_request(request))
        # The session ended inside Authlib; its device leaves Synapse before the client hears back.
        await accounts.sync_deletions()
        return _oauth(response)

    async def introspect(request: Request) -> JSONResponse:
        return _oauth(server.respond("introspection", await _form_request(request)))

    # -- verification page (RFC 8628 §3.3) -------------------------------------------------------------------

    async def link_page(request: Request) -> HTMLResponse:
        csrf = browser.csrf_token(request)
        user = browser.user(request, accounts)
        content = pages.link_form(
            user_code=request.query_params.get("user_code", ""),
            csrf=csrf,
            signed_in_as=accounts.user_id(user.localpart) if user else None,
        )
        return browser.html(request, content, csrf)

    async def link_submit(request: Request) -> HTMLResponse:
        form = await _form(request)
        csrf = browser.csrf_token(request)
        user = browser.user(request, accounts)

        def again(error: str, status: int = 400) -> HTMLResponse:
            signed_in_as = accounts.user_id(user.localpart) if user else None
            content = pages.link_form(
                user_code=form.get("user_code", ""), csrf=csrf, signed_in_as=signed_in_as, error=error
            )
            return browser.html(request, content, csrf, status)

        if not browser.csrf_ok(request, form):
            return again("The form expired; please submit it again.", 403)
        signing_in = user is None
        if user is None:
            user = accounts.store.authenticate(form.get("username", ""), form.get("password", ""))
            if user is None:
                return again("Wrong username or password.", 401)
        grant = accounts.store.grant_by_user_code(form.get("user_code", ""))
        if grant is None:
            response = again("Unknown code. Check the code shown on the device.", 404)
        elif grant.is_expired():
            response = again("This code has expired. Start again on the device.", 410)
        elif grant.status is not GrantStatus.PENDING:
            response = again(f"This request was already {grant.status.value}.", 409)
        else:
            content = pages.consent(
                grant=grant,
                client=accounts.store.clients.get(grant.client_id),
                user_id=accounts.user_id(user.localpart),
                csrf=csrf,
            )
            response = browser.html(request, content, csrf)
        if signing_in:
            browser.sign_in(response, user)
        return response

    async def link_consent(request: Request) -> HTMLResponse:
        form = await _form(request)
        csrf = browser.csrf_token(request)
        user = browser.user(request, accounts)
        if not browser.csrf_ok(request, form) or user is None:
            return browser.html(
                request, pages.result("Not allowed", "Sign in and try again.", status_error=True), csrf, 403
            )
        grant = accounts.store.grant_by_user_code(form.get("user_code", ""))
        if grant is None:
            return browser.html(
                request,
                pages.result("Unknown code", "Start again on your device.", status_error=True),
                csrf,
                404,
            )
        try:
            if form.get("action") == "approve":
                await accounts.approve(grant, user)
                page = pages.result(
                    "Device linked",
                    f"Device {grant.device_id} may now sign in. You can return to your device.",
                )
            else:
                accounts.deny(grant)
                page = pages.result("Request denied", "The device was not signed in.")
        except ApprovalError as error:
            return browser.html(request, pages.result("Cannot continue", str(error), status_error=True), csrf, 409)
        except ProvisioningError as error:
            return browser.html(request, pages.result("Homeserver error", str(error), status_error=True), csrf, 502)
        return browser.html(request, page, csrf)

    # -- account page (account_management_uri) ---------------------------------------------------------------

    async def account_page(request: Request) -> HTMLResponse:
        csrf = browser.csrf_token(request)
        action = request.query_params.get("action", "")
        user = browser.user(request, accounts)
        if user is None:
            return browser.html(request, pages.account_login(csrf=csrf, action=action), csrf)
        content = pages.account(
            user_id=accounts.user_id(user.localpart),
            sessions=accounts.store.user_sessions(user.localpart),
            csrf=csrf,
            action=action,
            message=request.query_params.get("done"),
        )
        return browser.html(request, content, csrf)

    def _to_account(**query: str) -> RedirectResponse:
        suffix = f"?{urlencode(query)}" if query else ""
        return RedirectResponse(server.settings.endpoint("account") + suffix, status_code=303)

    async def account_login(request: Request) -> Response:
        form = await _form(request)
        csrf = browser.csrf_token(request)
        action = form.get("action", "")
        if not browser.csrf_ok(request, form):
            return browser.html(
                request, pages.account_login(csrf=csrf, action=action, error="The form expired."), csrf, 403
            )
        user = accounts.store.authenticate(form.get("username", ""), form.get("password", ""))
        if user is None:
            return browser.html(
                request,
                pages.account_login(csrf=csrf, action=action, error="Wrong username or password."),
                csrf,
                401,
            )
        response = _to_account(action=action) if action else _to_account()
        browser.sign_in(response, user)
        return response

    async def account_end_session(request: Request) -> Response:
        form = await _form(request)
        user = browser.user(request, accounts)
        session = accounts.store.sessions.get(form.get("session_id", ""))
        if not browser.csrf_ok(request, form) or user is None or session is None or session.localpart != user.localpart:
            return _to_account()
        await accounts.end_session(session)
        return _to_account(done=f"Signed out device {session.device_id}.")

    async def account_cross_signing_reset(request: Request) -> Response:
        form = await _form(request)
        user = browser.user(request, accounts)
        if not browser.csrf_ok(request, form) or user is None:
            return _to_account()
        await accounts.allow_cross_signing_reset(user.localpart)
        return _to_account(done="Cross-signing reset allowed; retry on your client now.")

    # -- DEV ONLY admin API ----------------------------------------------------------------------------------

    def admin(handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), admin_token.encode()):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            try:
                body = json.loads(await request.body() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                return JSONResponse(await handler(body))
            except (ValueError, KeyError, InvalidUser, InvalidMatrixScope, ApprovalError) as error:
                return JSONResponse({"error": "bad_request", "error_description": str(error)}, status_code=400)
            except ProvisioningError as error:
                return JSONResponse({"error": "homeserver_error", "error_description": str(error)}, status_code=502)

        return endpoint

    async def admin_create_user(body: dict[str, Any]) -> dict[str, Any]:
        user = await accounts.create_user(
            str(body["localpart"]), str(body["password"]), displayname=body.get("displayname")
        )
        return {"user_id": accounts.user_id(user.localpart)}

    async def admin_login_device(body: dict[str, Any]) -> dict[str, Any]:
        tokens = await accounts.login_device(str(body["localpart"]), str(body["device_id"]))
        return {
            "user_id": tokens.user_id,
            "device_id": tokens.device_id,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": tokens.expires_in,
            "scope": tokens.scope,
        }

    async def admin_cross_signing_reset(body: dict[str, Any]) -> dict[str, Any]:
        await accounts.allow_cross_signing_reset(str(body["localpart"]))
        return {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def sweep() -> None:
            # Approved grants that expire un-redeemed leave a device behind; remove it.
            while True:
                await asyncio.sleep(1.0)
                await accounts.sync_deletions()

        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/.well-known/openid-configuration", metadata, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/oauth2/registration", registration, methods=["POST"]),
        Route("/oauth2/device", device_authorization, methods=["POST"]),
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/oauth2/revoke", revoke, methods=["POST"]),
        Route("/oauth2/introspect", introspect, methods=["POST"]),
        Route("/link", link_page, methods=["GET"]),
        Route("/link", link_submit, methods=["POST"]),
        Route("/link/consent", link_consent, methods=["POST"]),
        Route("/account", account_page, methods=["GET"]),
        Route("/account/login", account_login, methods=["POST"]),
        Route("/account/sessions/end", account_end_session, methods=["POST"]),
        Route("/account/cross_signing_reset", account_cross_signing_reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/users", admin(admin_create_user), methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/sessions", admin(admin_login_device), methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/cross_signing_reset", admin(admin_cross_signing_reset), methods=["POST"]),
    ]
    # Browser clients (Element Web) call the discovery, registration and token endpoints cross-origin.
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
