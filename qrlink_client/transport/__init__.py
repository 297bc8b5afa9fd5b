"""Rendezvous transports: the HTTP side of sign in with QR code, one per generation, async over httpx.

- :class:`Gen1Transport`: MSC4108 (2024), opaque session URL, text/plain bodies, ETag / If-Match /
  If-None-Match.
- :class:`Gen2Transport`: MSC4388, ``{base_url}/…/rendezvous/{id}``, JSON bodies, ``sequence_token``, txnId
  PUTs.

Both retry network errors and 5xx with backoff, stop at the session's expiry, return each new payload exactly
once (never the echo of their own write), and use qrlink's push extension (long-poll or WebSocket) when the
server advertises it, polling at :attr:`~TransportOptions.poll_interval` otherwise. Errors derive from
:class:`RendezvousError`.
"""

from ._engine import RendezvousTransport
from .errors import (
    ConcurrentWrite,
    CreateNotAvailable,
    PayloadTooLarge,
    ReceiveTimeout,
    RendezvousError,
    RendezvousProtocolError,
    RendezvousUnavailable,
    SessionExpired,
    SessionNotFound,
    TransportClosed,
)
from .gen1 import Gen1Transport
from .gen2 import Gen2Discovery, Gen2Prefix, Gen2Transport, rendezvous_endpoint
from .options import RetryPolicy, TransportOptions
from .push import PushSupport

__all__ = [
    "ConcurrentWrite",
    "CreateNotAvailable",
    "Gen1Transport",
    "Gen2Discovery",
    "Gen2Prefix",
    "Gen2Transport",
    "PayloadTooLarge",
    "PushSupport",
    "ReceiveTimeout",
    "RendezvousError",
    "RendezvousProtocolError",
    "RendezvousTransport",
    "RendezvousUnavailable",
    "RetryPolicy",
    "SessionExpired",
    "SessionNotFound",
    "TransportClosed",
    "TransportOptions",
    "rendezvous_endpoint",
]
