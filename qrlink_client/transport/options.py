"""Tuning knobs shared by both transports: polling, retries, push delivery."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryPolicy", "TransportOptions"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff for network errors, 5xx and 429.

    ``attempts`` counts every try, the first included. The delay before retry *n* (1-based) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, spread by ±``jitter`` (a fraction) so that two
    devices that failed together do not retry in lockstep. A server's ``Retry-After`` or ``retry_after_ms``
    hint replaces the computed delay, capped at ``max_delay``.
    """

    attempts: int = 5
    initial_delay: float = 0.25
    max_delay: float = 4.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy delays must be non-negative, multiplier >= 1 and 0 <= jitter < 1")

    def delay(self, retry: int, hint: float | None = None) -> float:
        """Seconds to wait before retry number *retry* (1-based), honouring a server *hint* when given."""
        if hint is not None:
            return min(max(hint, 0.0), self.max_delay)
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        # Jitter only spreads retries in time; it protects nothing, so the non-cryptographic generator is
        # right.
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311


@dataclass(frozen=True)
class TransportOptions:
    """How a transport polls, retries and uses the optional push extension.

    - ``poll_interval``: seconds between polls when nothing changed (Element's clients use 1 s).
    - ``retry``: the :class:`RetryPolicy` for every request.
    - ``push``: use long-poll / WebSocket delivery when the server advertises it (``X-Qrlink-Push`` header or
      the Gen-2 discovery field); interval polling is always the fallback.
    - ``websocket``: prefer the WebSocket watch over long-poll when both are advertised.
    - ``long_poll_wait``: the longest wait (seconds) to ask of a long-poll; the server's ``max-wait-ms`` caps
      it.
    - ``websocket_open_timeout``: seconds to wait for the WebSocket handshake before falling back to polling.
    """

    poll_interval: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    push: bool = True
    websocket: bool = True
    long_poll_wait: float = 30.0
    websocket_open_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.long_poll_wait <= 0 or self.websocket_open_timeout <= 0:
            raise ValueError("TransportOptions intervals and timeouts must be positive")
