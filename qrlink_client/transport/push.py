"""Client side of qrlink's optional push-delivery extension (long-poll and WebSocket watch).

A server that offers the extension advertises it on every session response with the header
``X-Qrlink-Push: long-poll; max-wait-ms=<N>[, websocket]`` and, for Gen-2, in discovery as
``"io.qrlink.push": {"long_poll": true, "max_timeout_ms": N, "websocket": bool}``. Standard servers (Synapse,
tuwunel) send neither, and the transports then poll at an interval, exactly as Element's clients do.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .._json import loads

__all__ = ["PUSH_DISCOVERY_FIELD", "PUSH_HEADER", "WATCH_GONE_CODE", "PushSupport", "WatchClosed"]

PUSH_HEADER = "X-Qrlink-Push"
"""Response header that advertises the extension on Gen-1 and Gen-2 session responses."""

PUSH_DISCOVERY_FIELD = "io.qrlink.push"
"""Field of the Gen-2 discovery response that advertises the extension."""

WATCH_GONE_CODE = 4404
"""WebSocket close code the server uses when the watched session is deleted or expires."""

_MAX_FRAME_BYTES = 64 * 1024  # a frame carries one payload (≤ 4096 bytes) plus a token: far below this
MAX_WAIT_MS = 3_600_000
"""A longer advertised ``max-wait-ms`` / ``max_timeout_ms`` is read as one hour (the client asks for far less)."""
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts "²", which int() refuses


@dataclass(frozen=True)
class PushSupport:
    """What the server's push extension offers."""

    long_poll: bool
    """Whether GET can wait for a change (Gen-1 ``Prefer: wait``, Gen-2 ``since`` + ``timeout_ms``)."""
    max_wait_ms: int | None
    """The longest wait the server grants, if it said."""
    websocket: bool
    """Whether ``<session>/watch`` upgrades to a WebSocket that streams revisions."""


def parse_push_header(value: str | None) -> PushSupport | None:
    """Parse ``X-Qrlink-Push``; ``None`` when absent or naming nothing this client knows.

    The header is a comma-separated list of features, each with optional ``;key=value`` parameters. Unknown
    features and malformed parameters are ignored rather than fatal: the extension is an optimisation, never a
    requirement.
    """
    if not value:
        return None
    long_poll = websocket = False
    max_wait_ms: int | None = None
    for item in value.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        name = name.lower()
        if name == "websocket":
            websocket = True
        elif name == "long-poll":
            long_poll = True
            for param in params:
                key, _, raw = param.partition("=")
                if key.strip().lower() == "max-wait-ms" and _DIGITS.fullmatch(raw.strip()):
                    max_wait_ms = _bounded_wait(raw.strip())
    if not (long_poll or websocket):
        return None
    return PushSupport(long_poll=long_poll, max_wait_ms=max_wait_ms, websocket=websocket)


def _bounded_wait(digits: str) -> int:
    # Compare the length first: int() refuses more than 4300 digits, and no wait needs more than ten.
    return MAX_WAIT_MS if len(digits) > 10 else min(int(digits), MAX_WAIT_MS)


def parse_push_discovery(body: object) -> PushSupport | None:
    """Read the ``io.qrlink.push`` field of a Gen-2 discovery body; ``None`` when absent or malformed."""
    if not isinstance(body, dict):
        return None
    field = body.get(PUSH_DISCOVERY_FIELD)
    if not isinstance(field, dict):
        return None
    long_poll = field.get("long_poll") is True
    websocket = field.get("websocket") is True
    raw_max = field.get("max_timeout_ms")
    max_wait_ms = None
    if isinstance(raw_max, int) and not isinstance(raw_max, bool) and raw_max > 0:
        max_wait_ms = min(raw_max, MAX_WAIT_MS)
    if not (long_poll or websocket):
        return None
    return PushSupport(long_poll=long_poll, max_wait_ms=max_wait_ms, websocket=websocket)


def watch_url(session_url: str) -> str:
    """The WebSocket URL of a session's ``/watch`` resource (``http``→``ws``, ``https``→``wss``)."""
    parts = urlsplit(session_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/watch", parts.query, ""))


class WatchClosed(Exception):
    """The watch connection ended; ``code`` is the WebSocket close code (``None`` when it never opened)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"watch closed with code {code}")
        self.code = code


class Watch:
    """One WebSocket watch on a session: JSON frames in, one per revision, starting with the current one."""

    def __init__(self, url: str, *, open_timeout: float) -> None:
        self._url = url
        self._open_timeout = open_timeout
        self._conn: ClientConnection | None = None

    def __repr__(self) -> str:
        return f"Watch(open={self._conn is not None})"

    async def next_frame(self, wait: float | None) -> dict[str, Any] | None:
        """The next frame as a JSON object, or ``None`` if none came within *wait* seconds.

        Raises :class:`WatchClosed` when the connection cannot be opened or has ended, and
        :class:`ValueError` for a frame that is not a JSON object (or not I-JSON: see
        :func:`qrlink_client._json.loads`).
        """
        if self._conn is None:
            try:
                self._conn = await connect(
                    self._url, open_timeout=self._open_timeout, max_size=_MAX_FRAME_BYTES, compression=None
                )
            except Exception as exc:  # refused, timed out, or a non-101 answer (InvalidStatus): no watch here
                raise WatchClosed(None) from exc
        try:
            # recv() is cancellation-safe in websockets' asyncio implementation: a timeout loses no frame.
            async with asyncio.timeout(wait):
                message = await self._conn.recv()
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            await self.aclose()
            raise WatchClosed(code) from None
        frame = loads(message)
        if not isinstance(frame, dict):
            raise ValueError("watch frame is not a JSON object")
        return frame

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
