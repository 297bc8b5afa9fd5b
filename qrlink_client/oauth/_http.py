"""The one way the OAuth modules make a request and read its answer, over httpx.

No answer or a 5xx becomes :class:`~.errors.OAuthTransportError`, a body that is not JSON
:class:`~.errors.OAuthProtocolError`, and a refusal the :class:`~.errors.OAuthError` subclass the caller names.
Messages keep only the method, the URL without its query and the status: a request may hold a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .._json import loads
from .errors import OAuthError, OAuthProtocolError, OAuthTransportError

__all__ = ["error_from", "join", "json_body", "request"]


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path


async def request(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):
        # The URL came from a server (metadata endpoints, the well-known base URL) and httpx cannot send it.
        raise OAuthProtocolError(f"{method}: the endpoint is not a valid URL") from None
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        # The request (and so the exception's own text) may hold a device code or token: keep only its kind.
        raise OAuthTransportError(f"{method} {_no_query(url)} failed: {type(error).__name__}") from None
    if response.status_code >= 500:
        raise OAuthTransportError(f"{method} {_no_query(url)} failed", status=response.status_code)
    return response


def _no_query(url: str) -> str:
    return url.split("?", 1)[0]


def json_body(response: httpx.Response, what: str, *, allow_error: bool = False) -> Any:
    try:
        return loads(response.content)
    except ValueError:  # not JSON, or not I-JSON: nested too deep, a lone surrogate, NaN or 1e400
        if allow_error and response.status_code != 200:
            return None
        raise OAuthProtocolError(f"{what} answer is not JSON", status=response.status_code) from None


def error_from(kind: type[OAuthError], message: str, response: httpx.Response, body: Any) -> OAuthError:
    error = body.get("error") if isinstance(body, Mapping) else None
    description = body.get("error_description") if isinstance(body, Mapping) else None
    return kind(
        message,
        error=error if isinstance(error, str) else None,
        description=description if isinstance(description, str) else None,
        status=response.status_code,
    )
