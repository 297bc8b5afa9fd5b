"""What every route needs: settings, the store, the proxy resolver, metrics, rate limits and the token verifier."""

from __future__ import annotations

from dataclasses import dataclass

from .auth import TokenVerifier
from .config import Settings
from .http import MatrixError, Request
from .metrics import ExpiryWatch, Metrics
from .protocol import M_LIMIT_EXCEEDED
from .proxy import ProxyResolver
from .store import Session, SessionStore, is_opaque_id
from .store.base import RateLimit


@dataclass(slots=True)
class ServerContext:
    """Shared, read-only state of one running app."""

    settings: Settings
    store: SessionStore
    proxies: ProxyResolver
    metrics: Metrics
    #: Counts the sessions this process created that expire.
    expiry: ExpiryWatch
    #: Only when the Gen-2 create policy is ``authenticated``.
    verifier: TokenVerifier | None = None

    @property
    def ttl_ms(self) -> int:
        """Session lifetime, the same for both generations."""
        return self.settings.ttl_seconds * 1000

    async def limit_create(self, request: Request) -> None:
        """Take a token from the client's create bucket, or raise 429."""
        rate = self.settings.create_rate_per_second
        if rate > 0:
            await self._take(f"create:{self.proxies.client_ip(request)}", rate, self.settings.create_burst)

    async def limit_session(self, request: Request) -> None:
        """Take a token from the client's read/write bucket, or raise 429."""
        rate = self.settings.session_rate_per_second
        if rate > 0:
            await self._take(f"session:{self.proxies.client_ip(request)}", rate, self.settings.session_burst)

    async def limited_read(self, request: Request, session_id: str) -> Session | None:
        """:meth:`limit_session`, then the session (``None`` if there is none): one store call where it can be.

        Raises 429 without reading when the client's bucket is empty.
        """
        rate = self.settings.session_rate_per_second
        if rate <= 0:
            return await self.store.get(session_id) if is_opaque_id(session_id) else None
        limit = RateLimit(f"session:{self.proxies.client_ip(request)}", rate, self.settings.session_burst)
        retry_after_ms, session = await self.store.limited_get(session_id, limit)
        if retry_after_ms > 0:
            raise _too_many_requests(retry_after_ms)
        return session

    async def _take(self, key: str, rate: float, burst: int) -> None:
        retry_after_ms = await self.store.rate_limit(key, rate_per_s=rate, burst=burst)
        if retry_after_ms > 0:
            raise _too_many_requests(retry_after_ms)


#: Suggested wait when ``max_sessions`` is reached: sessions end within ``ttl_seconds``, and most logins finish in
#: well under a minute.
SESSIONS_FULL_RETRY_AFTER_MS = 10_000


def sessions_full() -> MatrixError:
    """429 for a create refused because ``max_sessions`` sessions are live."""
    return MatrixError(
        429,
        M_LIMIT_EXCEEDED,
        "Too many rendezvous sessions in progress",
        retry_after_ms=SESSIONS_FULL_RETRY_AFTER_MS,
    )


def _too_many_requests(retry_after_ms: int) -> MatrixError:
    return MatrixError(429, M_LIMIT_EXCEEDED, "Too many requests", retry_after_ms=retry_after_ms)
