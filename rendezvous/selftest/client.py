"""The HTTP side of a run: requests that look like Element's, 429s waited out, session ids kept out of reports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..protocol import GEN1_PATH, GEN2_STABLE_PATH, GEN2_UNSTABLE_PATH, VERSIONS_PATH
from .answers import json_field
from .options import SelfTestOptions

#: What a browser sends, so that a compressing proxy has every reason to compress.
ACCEPT_ENCODING = "gzip, deflate, br"
#: The ``Sec-Fetch-*`` headers of a ``fetch()`` from another origin: what Element Web sends.
FETCH_METADATA = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "cross-site"}
#: The ``Sec-Fetch-*`` headers of a session URL typed into the address bar.
NAVIGATION_METADATA = {
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Site": "none",
    "Sec-Fetch-User": "?1",
}
#: How long a 429 answer may make one request wait, and how often it is retried.
_MAX_RATE_LIMIT_WAIT_S = 10.0
_RATE_LIMIT_RETRIES = 3


class RequestFailed(Exception):
    """A request got no HTTP answer at all (connection refused, TLS error, timeout)."""


class ForeignOrigin(RequestFailed):
    """A request was not sent: its URL, which the tested server chose, is on an origin the run may not visit."""


def open_client(options: SelfTestOptions, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An HTTP client that never follows redirects on its own (the Gen-1 create follows 307s as browsers do)."""
    return httpx.AsyncClient(
        timeout=options.timeout_s,
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": f"rendezvous-selftest/{__version__}", "Accept-Encoding": ACCEPT_ENCODING},
    )


class SelfTestClient:
    """Sends the run's requests with the headers Element's clients send."""

    def __init__(self, options: SelfTestOptions, client: httpx.AsyncClient) -> None:
        self.options = options
        self.base = normalise_base_url(options.base_url)
        self._client = client
        given = [self.base, *options.allowed_origins]
        if options.gen1_create_url:
            given.append(options.gen1_create_url)
        self._origins = {origin_of(normalise_base_url(url)) for url in given}

    def allows(self, url: str) -> bool:
        """Whether ``url`` is on an origin this run may send requests to."""
        return origin_of(url) in self._origins

    def foreign(self, url: str) -> str:
        """Why a request to ``url`` is not sent, and how to allow it."""
        scheme, host = origin_of(url)
        return (
            f"{where(url, path=False)} is not the origin under test, so no request was sent there "
            f"(a server could aim the test at an internal address). If it is yours, pass --allow-origin "
            f"{scheme}://{host}."
        )

    def browser(self, extra: Mapping[str, str] | None = None, *, origin: str | None = None) -> dict[str, str]:
        """Headers of a cross-origin ``fetch()`` from Element Web."""
        return {"Origin": origin or self.options.origin, **FETCH_METADATA, **(extra or {})}

    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header for Gen-2 discovery and create, if a token was given."""
        token = self.options.access_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """One request; a 429 is waited out (as clients do) a few times. :class:`RequestFailed` if no answer.

        :class:`ForeignOrigin` (nothing sent) for a URL on an origin the run may not visit.
        """
        if not self.allows(url):
            raise ForeignOrigin(f"{method} not sent: {self.foreign(url)}")
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            try:
                response = await self._client.request(method, url, headers=headers, content=content, json=json_body)
            except httpx.HTTPError as exc:
                raise RequestFailed(f"{method} {where(url)} got no answer ({type(exc).__name__}: {exc})") from None
            if response.status_code != 429 or attempt == _RATE_LIMIT_RETRIES:
                return response
            await asyncio.sleep(_retry_after_s(response))
        raise AssertionError("unreachable")


def _retry_after_s(response: httpx.Response) -> float:
    seconds: float = 1.0
    header = response.headers.get("retry-after")
    if header is not None and header.strip().isdigit():
        seconds = float(header.strip())
    else:
        value = json_field(response, "retry_after_ms")
        if isinstance(value, int):
            seconds = value / 1000
    return min(max(seconds, 0.1), _MAX_RATE_LIMIT_WAIT_S)


def normalise_base_url(base_url: str) -> str:
    """``base_url`` with a scheme (``https://`` if none) and without a trailing slash."""
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    return base_url.rstrip("/")


def origin_of(url: str) -> tuple[str, str]:
    """The scheme and host of ``url``: what the Fetch standard compares to tell a cross-origin redirect."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def where(url: str, *, path: bool = True) -> str:
    """``url`` without the session id: ids are capabilities and stay out of reports."""
    parts = urlsplit(url)
    here = f"{parts.scheme}://{parts.netloc}"
    if not path:
        return here
    for prefix in (GEN1_PATH, GEN2_UNSTABLE_PATH, GEN2_STABLE_PATH, VERSIONS_PATH):
        if parts.path.startswith(prefix):
            rest = "/…" if len(parts.path) > len(prefix) else ""
            return f"{here}{parts.path[: parts.path.index(prefix) + len(prefix)]}{rest}"
    return f"{here}{parts.path.rsplit('/', 1)[0]}/…" if parts.path.count("/") > 1 else f"{here}{parts.path}"
