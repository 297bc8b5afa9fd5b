"""Named errors of the rendezvous transports.

Every error carries the HTTP ``status`` and Matrix ``errcode`` that caused it, when there was one. Messages
name the operation and the status, never a payload, a sequence token, an ETag or a session id: those are
either secret (ciphertext, capability URLs) or let an observer join the session.
"""

from __future__ import annotations

from ..errors import QrLinkError

__all__ = [
    "ConcurrentWrite",
    "CreateNotAvailable",
    "PayloadTooLarge",
    "ReceiveTimeout",
    "RendezvousError",
    "RendezvousProtocolError",
    "RendezvousUnavailable",
    "SessionExpired",
    "SessionNotFound",
    "TransportClosed",
]


class RendezvousError(QrLinkError):
    """Base class of every rendezvous transport error."""

    def __init__(self, message: str, *, status: int | None = None, errcode: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status that caused the error, if any."""
        self.errcode = errcode
        """The Matrix ``errcode`` of the error response, if any."""


class SessionExpired(RendezvousError):
    """The session's lifetime (``Expires`` / ``expires_in_ms``) is over; nothing more can be exchanged."""


class SessionNotFound(RendezvousError):
    """The server does not know the session (404): the peer cancelled (DELETE) it, or it never existed."""


class ConcurrentWrite(RendezvousError):
    """Someone else wrote first (Gen-1 412, Gen-2 409) and the write could not be recognised as our own.

    Under the protocol's strict ping-pong this means the peer sent a message we have not read yet. The payload
    is not re-sent with the newer token automatically: a Gen-2 ciphertext is bound to the token in its AAD, so
    the caller must receive first and then encrypt again.
    """


class RendezvousUnavailable(RendezvousError):
    """The server stayed unreachable or kept failing (network error, 5xx, 429) through every retry."""


class RendezvousProtocolError(RendezvousError):
    """The server answered something the protocol does not allow (missing ETag, wrong content type, bad JSON,
    …)."""


class PayloadTooLarge(RendezvousError):
    """The server refused the payload as too large (413 ``M_TOO_LARGE``; both MSCs allow 4096 bytes)."""


class CreateNotAvailable(RendezvousError):
    """The server does not let this requester create a session (Gen-2 discovery said no, 401/403, API off)."""


class ReceiveTimeout(RendezvousError, TimeoutError):
    """``receive(timeout=…)`` saw no new payload in time. The session is still usable."""


class TransportClosed(RendezvousError):
    """The transport was closed (``aclose``) or its session deleted by this side; it cannot be used again."""
