"""Access-token checks for the Gen-2 create policy ``authenticated``.

A token is valid when the configured homeserver's ``GET /_matrix/client/v3/account/whoami`` accepts it.
Answers are cached briefly, keyed by a SHA-256 of the token so the token itself is never kept; invalid tokens
are cached for a shorter time so a newly issued token is never refused for long.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from .http import MatrixError, Request
from .protocol import M_UNKNOWN_TOKEN, WHOAMI_PATH

if TYPE_CHECKING:
    import httpx

#: Invalid answers are kept at most this long, whatever the cache setting.
NEGATIVE_CACHE_SECONDS = 10.0
#: Cap on remembered answers, so a flood of random tokens cannot grow memory without bound.
MAX_CACHE_ENTRIES = 10_000
#: Suggested wait when the homeserver cannot answer.
HOMESERVER_RETRY_AFTER_MS = 5_000
#: What an access token may be made of: visible ASCII, at most a few KiB. Anything else (non-ASCII, spaces,
#: control characters) can be no homeserver's token and could not even be put into the whoami request's
#: Authorization header, so it is refused here instead of failing (500) or looking like an outage (503) there.
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,4096}")


@dataclass(frozen=True, slots=True)
class Requester:
    """A caller whose access token the homeserver accepted."""

    user_id: str


class InvalidToken(Exception):
    """The homeserver refused the access token."""


class HomeserverUnavailable(Exception):
    """The homeserver could not be asked, or gave an answer that means neither yes nor no."""


def access_token(request: Request) -> str | None:
    """The request's access token: ``Authorization: Bearer``, or the legacy ``access_token`` parameter.

    Raises 401 ``M_UNKNOWN_TOKEN`` for an Authorization header that carries no Bearer token, and for a token that
    is not a token string (:data:`_TOKEN_RE`): a request that tries to authenticate must never be treated as
    anonymous (MSC4388).
    """
    authorization = request.header(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _unknown_token()
        return _checked(token.strip())
    query: bytes = request.scope.get("query_string", b"")
    if b"access_token=" in query:
        values = parse_qs(query.decode("latin-1")).get("access_token")
        if values:
            return _checked(values[-1])
        raise _unknown_token()
    return None


def _checked(token: str) -> str:
    if _TOKEN_RE.fullmatch(token) is None:
        raise _unknown_token()
    return token


def _unknown_token() -> MatrixError:
    return MatrixError(401, M_UNKNOWN_TOKEN, "Unrecognised access token")


class TokenVerifier:
    """Asks the homeserver who a token belongs to, with a small answer cache."""

    @staticmethod
    def http_client(timeout_s: float) -> httpx.AsyncClient:
        """The client for the whoami requests. httpx, the largest import a server could make, is loaded here, so a
        server without a homeserver configured never loads it."""
        import httpx

        return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)

    def __init__(
        self,
        homeserver_url: str,
        client: httpx.AsyncClient,
        *,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._whoami_url = homeserver_url.rstrip("/") + WHOAMI_PATH
        self._client = client
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[bytes, tuple[float, str | None]] = {}

    async def verify(self, token: str) -> Requester:
        """The owner of ``token``. Raises :class:`InvalidToken` or :class:`HomeserverUnavailable`."""
        key = hashlib.sha256(token.encode()).digest()
        now = self._monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            if cached[1] is None:
                raise InvalidToken
            return Requester(cached[1])
        user_id = await self._ask(token)
        self._remember(key, now, user_id)
        if user_id is None:
            raise InvalidToken
        return Requester(user_id)

    async def _ask(self, token: str) -> str | None:
        import httpx  # loaded with the client, only when a homeserver is configured

        try:
            response = await self._client.get(self._whoami_url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            # The exception text can include the request; keep only its type.
            raise HomeserverUnavailable(type(exc).__name__) from None
        if response.status_code in (401, 403):
            return None
        if response.status_code != 200:
            raise HomeserverUnavailable(f"whoami answered {response.status_code}")
        try:
            user_id = response.json().get("user_id")
        except (ValueError, AttributeError):
            user_id = None
        if not isinstance(user_id, str) or not user_id:
            raise HomeserverUnavailable("whoami answered without a user_id")
        return user_id

    def _remember(self, key: bytes, now: float, user_id: str | None) -> None:
        lifetime = self._cache_seconds if user_id is not None else min(self._cache_seconds, NEGATIVE_CACHE_SECONDS)
        if lifetime <= 0:
            return
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            for stale in [k for k, (expiry, _) in self._cache.items() if expiry <= now]:
                del self._cache[stale]
            while len(self._cache) >= MAX_CACHE_ENTRIES:
                del self._cache[next(iter(self._cache))]  # oldest insertion first
        self._cache[key] = (now + lifetime, user_id)
