"""Errors the peer reports about a request (as opposed to library errors), and :func:`describe`, the message
any failure is reported with.
"""

from __future__ import annotations

import sys

from ...errors import QrLinkError

__all__ = [
    "BadJson",
    "BadRequest",
    "HandshakeFailed",
    "HandshakePending",
    "HandshakeTimeout",
    "PeerError",
    "UnknownChannel",
    "UnknownHandshake",
    "UnknownOp",
    "describe",
]


class PeerError(QrLinkError):
    """Base class of the errors the peer reports about a request (as opposed to library errors).

    A missing or malformed field is reported as :class:`~qrlink_client.request_fields.MissingField` or
    :class:`~qrlink_client.request_fields.InvalidFieldValue`, which the QR field mapping shares.
    """


class BadJson(PeerError):
    """The line is not valid UTF-8 JSON."""


class BadRequest(PeerError):
    """The line is JSON but not an object, or its ``op`` is not a string."""


class UnknownOp(PeerError):
    """The ``op`` names no operation of this peer."""


class UnknownChannel(PeerError):
    """The ``channel`` handle names no open channel."""


class UnknownHandshake(PeerError):
    """The ``handshake`` handle names no running or finished handshake."""


class HandshakeTimeout(PeerError):
    """``handshake_wait`` gave up after ``timeout_ms``; the handshake itself goes on."""


class HandshakeFailed(PeerError):
    """The handshake failed earlier, so its channel cannot carry messages (``handshake_status`` says why)."""


class HandshakePending(PeerError):
    """The handshake is still running, so its channel cannot carry messages yet."""


def describe(exc: BaseException) -> str:
    """The message to report for ``exc``.

    Library errors promise messages free of secrets, and httpx errors only name URLs and statuses, so their
    text is passed on. Anything else is a bug whose text could hold any value, so only its class is named.
    """
    if isinstance(exc, QrLinkError):
        return str(exc) or type(exc).__name__
    # httpx is imported only once a handshake needs it, which keeps the codec/channel peer quick to start.
    httpx_module = sys.modules.get("httpx")
    if httpx_module is not None and isinstance(exc, httpx_module.HTTPError):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}"
