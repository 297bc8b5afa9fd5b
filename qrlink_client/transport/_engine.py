"""What both generations share: retries, the session clock, the receive loop and new-payload detection.

A *revision* is one state of the session's single slot: a tag (Gen-1 ETag, Gen-2 ``sequence_token``) and the
data. A receiver must open each new payload exactly once (Gen-2 HPKE sequence numbers advance on every Open,
and a Gen-2 GET returns the same payload again and again), so a payload is delivered only for a tag never seen
before, never for the echo of this side's own write, and never for an empty slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol, Self

import httpx

from .._json import loads
from .errors import (
    ReceiveTimeout,
    RendezvousError,
    RendezvousProtocolError,
    RendezvousUnavailable,
    SessionExpired,
    SessionNotFound,
    TransportClosed,
)
from .options import TransportOptions
from .push import WATCH_GONE_CODE, PushSupport, Watch, WatchClosed, parse_push_header, watch_url

__all__ = ["MAX_SESSION_LIFETIME", "RendezvousTransport"]

# A 404 this close to our own idea of the deadline is the server expiring the session, not the peer
# cancelling. HTTP dates have one-second resolution, so the deadline itself is only known to about a second.
_EXPIRY_SLACK = 2.0
# Long-poll requests get this much read timeout beyond the wait they ask for.
_LONG_POLL_MARGIN = 10.0
# Statuses with which a server that does not really implement long-poll may refuse its parameters.
_LONG_POLL_REFUSED = frozenset({400, 405, 406, 422, 501})
MAX_SESSION_LIFETIME = 24 * 3600.0
"""A server-given lifetime is capped at this many seconds (both MSCs expect a few minutes); a larger one, up to
``10**400`` ms or an ``Expires`` in the year 9999, is read as this."""
_MAX_RETRY_HINT = 3600.0  # seconds; the RetryPolicy caps every hint far lower anyway
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # Retry-After delta-seconds, ASCII digits only


class RendezvousTransport(Protocol):
    """The interface of both transports, as the layers above use it."""

    @property
    def sequence_token(self) -> str | None:
        """Gen-2: the token the next send PUTs with, which the sender binds into its AAD. Gen-1: ``None``.

        A message is sealed with this token just before it is sent, and the peer's next message is opened with it
        as read *before* receiving: the revision the peer writes over (docs/protocol.md, "AAD").
        """
        ...

    @property
    def own_sequence_token(self) -> str | None:
        """Gen-2: the token of this side's own last PUT/POST. Gen-1: ``None``.

        Under ping-pong it is the token the peer's reply is sealed with, but not when the peer writes twice in a
        row: open with :attr:`sequence_token` read before receiving instead.
        """
        ...

    @property
    def replaced_sequence_token(self) -> str | None:
        """Gen-2: the token this side's own last PUT was made with (``None`` after create). Gen-1: ``None``.

        A peer that wrote before reading that PUT (out of turn) sealed with this token instead.
        """
        ...

    @property
    def expires_in(self) -> float | None:
        """Seconds left in the session by the local monotonic clock; ``None`` if the server did not say."""
        ...

    async def send(self, data: str) -> None:
        """Write *data* into the session's slot."""
        ...

    async def receive(self, timeout: float | None = None) -> str:  # noqa: ASYNC109 - public API
        """Wait for the peer's next payload and return it."""
        ...

    async def receive_pending(self) -> str | None:
        """The peer's payload if the slot holds one not read yet, else ``None``; never waits."""
        ...

    async def delete(self) -> None:
        """Delete the session on the server (cancel)."""
        ...

    async def aclose(self) -> None:
        """Release connections held by the transport (not the borrowed HTTP client)."""
        ...


@dataclass(frozen=True)
class _Revision:
    tag: str
    data: str
    authoritative: bool  # True when it is the server's current state (a GET), False for a streamed frame


@dataclass(frozen=True)
class _Reply:
    response: httpx.Response
    started: float  # monotonic time the successful attempt was sent
    attempts: int


class _Transport:
    """Shared machinery; :class:`Gen1Transport` and :class:`Gen2Transport` supply the HTTP details."""

    _generation = "rendezvous"

    def __init__(self, client: httpx.AsyncClient, options: TransportOptions | None) -> None:
        self._client = client
        self._options = options or TransportOptions()
        self._clock = time.monotonic
        self._deadline: float | None = None
        self._push: PushSupport | None = None
        self._watch: Watch | None = None
        self._watch_failed = False
        self._long_poll_ok = True
        self._lock = asyncio.Lock()
        self._closed: str | None = None  # why the transport can no longer be used
        self._deleted = False
        self._current: str | None = None  # tag of the server's current revision, as far as we know
        self._own: str | None = None  # tag of our own last successful write
        self._replaced: str | None = None  # the tag our own last write replaced (the one it was made against)
        self._seen: set[str] = set()
        self._unconfirmed: str | None = None  # data of a send whose outcome is unknown (response lost)
        self._unconfirmed_base: str | None = None  # the tag that unconfirmed send was made against

    # --- public state ---------------------------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        """Seconds between polls when nothing changed."""
        return self._options.poll_interval

    @property
    def options(self) -> TransportOptions:
        """The options this transport runs with."""
        return self._options

    @property
    def push(self) -> PushSupport | None:
        """The push extension as last advertised by the server (``None``: not offered)."""
        return self._push

    @property
    def expires_in(self) -> float | None:
        """Seconds left in the session by the local monotonic clock; ``None`` if the server did not say."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    async def aclose(self) -> None:
        """Close the WebSocket watch, if any, and refuse further use.

        The HTTP client is the caller's to close; the session stays on the server (see :meth:`delete`).
        """
        if self._closed is None:
            self._closed = "the transport is closed"
        await self._close_watch()

    async def delete(self) -> None:
        """DELETE the session (cancel); the peer then sees 404.

        A session the server no longer has counts as deleted. Afterwards the transport refuses further use
        (:class:`TransportClosed`).
        """
        async with self._lock:
            if self._deleted:
                return
            reply = await self._request("DELETE", self._session_url(), "delete", check_expiry=False)
            status = reply.response.status_code
            if not (200 <= status < 300 or status == 404):
                raise unexpected("delete", reply.response)
            self._deleted = True
            self._closed = "the session was deleted by this side"
            await self._close_watch()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the receive loop -----------------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> str:  # noqa: ASYNC109 - public API
        """Wait for the peer's next payload and return it.

        Each new payload is returned exactly once; the echo of this side's own write and an empty slot are
        skipped. Delivery uses the WebSocket watch or long-poll when the server advertises them (and the
        options allow), falling back to polling every :attr:`poll_interval` seconds when they are absent or
        fail.

        Raises :class:`ReceiveTimeout` after *timeout* seconds without a payload (the session stays usable),
        :class:`SessionExpired` at the session's end, :class:`SessionNotFound` when the peer deleted it.
        """
        async with self._lock:
            self._check_usable()
            give_up = None if timeout is None else self._clock() + timeout
            while True:
                wait = self._time_left(give_up)
                if self._watch_usable():
                    data = await self._receive_frame(wait)
                    if data is not None:
                        return data
                    continue
                started = self._clock()
                revision = await self._poll(self._long_poll_wait(wait))
                if revision is not None:
                    data = self._accept(revision)
                    if data is not None:
                        return data
                # Pace the loop even when the server ignored a long-poll and answered at once.
                pause = self._options.poll_interval - (self._clock() - started)
                if pause > 0:
                    left = self._time_left(give_up)
                    await asyncio.sleep(pause if left is None else min(pause, left))

    async def receive_pending(self) -> str | None:
        """The peer's payload if the slot holds one this side has not read yet, else ``None``; never waits.

        One plain GET (no long-poll, no watch), with the same exactly-once rule as :meth:`receive`. For a
        caller about to write out of turn: reading first brings this side's view of the slot up to date, so
        the write is made against the current revision.
        """
        async with self._lock:
            self._check_usable()
            revision = await self._poll_now()
            return None if revision is None else self._accept(revision)

    def _time_left(self, give_up: float | None) -> float | None:
        """Seconds this receive may still wait; raises when the session or the caller's timeout is over."""
        now = self._clock()
        limits = []
        if self._deadline is not None:
            if now >= self._deadline:
                raise SessionExpired(f"{self._generation} session expired")
            limits.append(self._deadline - now)
        if give_up is not None:
            if now >= give_up:
                raise ReceiveTimeout(f"no new {self._generation} payload within the timeout")
            limits.append(give_up - now)
        return min(limits) if limits else None

    def _accept(self, revision: _Revision) -> str | None:
        """The payload of *revision* if it is new to this side, else ``None``; updates what we know."""
        if revision.tag in self._seen:
            if revision.authoritative:
                self._current = revision.tag
            return None
        self._seen.add(revision.tag)
        self._current = revision.tag
        if revision.data == "":
            return None
        if self._unconfirmed is not None and revision.data == self._unconfirmed:
            # Our own write whose response was lost: adopt its tag as ours instead of delivering it to
            # ourselves.
            self._own, self._replaced = revision.tag, self._unconfirmed_base
            self._unconfirmed = self._unconfirmed_base = None
            return None
        return revision.data

    def _commit_write(self, tag: str, replaced: str | None = None) -> None:
        self._seen.add(tag)
        self._current = self._own = tag
        self._replaced = replaced
        self._unconfirmed = self._unconfirmed_base = None

    # --- push -----------------------------------------------------------------------------------------------

    def _watch_usable(self) -> bool:
        push = self._push
        return (
            self._options.push
            and self._options.websocket
            and push is not None
            and push.websocket
            and not self._watch_failed
        )

    def _long_poll_wait(self, limit: float | None) -> float | None:
        """Seconds to ask a long-poll to wait, or ``None`` for a plain poll."""
        push = self._push
        if not (self._options.push and push is not None and push.long_poll and self._long_poll_ok):
            return None
        wait = self._options.long_poll_wait
        if push.max_wait_ms is not None:
            wait = min(wait, push.max_wait_ms / 1000)
        if limit is not None:
            wait = min(wait, limit)
        return wait if wait >= self._min_long_poll_wait() else None

    def _min_long_poll_wait(self) -> float:
        return 0.05

    def _long_poll_refused(self, status: int) -> bool:
        """After a long-poll answered *status*: whether to give long-poll up (the loop then polls plainly)."""
        if status in _LONG_POLL_REFUSED:
            self._long_poll_ok = False
            return True
        return False

    async def _receive_frame(self, wait: float | None) -> str | None:
        if self._watch is None:
            self._watch = Watch(watch_url(self._session_url()), open_timeout=self._options.websocket_open_timeout)
        try:
            frame = await self._watch.next_frame(wait)
        except WatchClosed as closed:
            await self._close_watch()
            if closed.code == WATCH_GONE_CODE:
                raise self._gone(None, None) from None
            # Refused, dropped or never opened: this session polls from now on.
            self._watch_failed = True
            return None
        except ValueError:
            raise RendezvousProtocolError(f"{self._generation} watch sent a frame that is not a JSON object") from None
        if frame is None:
            return None
        return self._accept(self._frame_revision(frame))

    async def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            with contextlib.suppress(Exception):
                await watch.aclose()

    # --- HTTP -----------------------------------------------------------------------------------------------

    async def _request(self, method: str, url: str, what: str, *, check_expiry: bool = True, **kwargs: Any) -> _Reply:
        """Send one request, retried (the same request) with backoff on network errors, 5xx and 429."""
        _check_url(url, what)
        policy = self._options.retry
        reason = ""
        for attempt in range(1, policy.attempts + 1):
            if check_expiry:
                self._check_alive()
            started = self._clock()
            hint: float | None = None
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.UnsupportedProtocol:
                raise RendezvousProtocolError(f"{what}: the rendezvous URL has an unsupported scheme") from None
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            except httpx.HTTPError as exc:  # DecodingError (a bad Content-Encoding), TooManyRedirects
                raise RendezvousProtocolError(f"{what}: the response cannot be read ({type(exc).__name__})") from None
            else:
                self._absorb_push(response)
                if response.status_code < 500 and response.status_code != 429:
                    return _Reply(response, started, attempt)
                reason = f"HTTP {response.status_code}"
                hint = _retry_hint(response)
            if attempt == policy.attempts:
                break
            delay = policy.delay(attempt, hint)
            if check_expiry and self._deadline is not None and self._clock() + delay >= self._deadline:
                raise SessionExpired(f"{what}: {self._generation} session expired while retrying ({reason})")
            await asyncio.sleep(delay)
        raise RendezvousUnavailable(f"{what}: gave up after {policy.attempts} attempts ({reason})")

    def _absorb_push(self, response: httpx.Response) -> None:
        advertised = parse_push_header(response.headers.get("x-qrlink-push"))
        if advertised is not None:
            self._push = advertised

    def _check_alive(self) -> None:
        if self._deadline is not None and self._clock() >= self._deadline:
            raise SessionExpired(f"{self._generation} session expired")

    def _check_usable(self) -> None:
        if self._closed is not None:
            raise TransportClosed(self._closed)

    def _gone(self, status: int | None, errcode: str | None) -> RendezvousError:
        """The error for a session the server no longer has: expired if its time is (about) up, else gone.

        Expired, the session's end moves to now: every later operation is then refused here, with nothing sent.
        """
        now = self._clock()
        if self._deadline is not None and now >= self._deadline - _EXPIRY_SLACK:
            self._deadline = min(self._deadline, now)
            return SessionExpired(f"{self._generation} session expired", status=status, errcode=errcode)
        return SessionNotFound(
            f"{self._generation} session not found (deleted by the peer, or unknown)",
            status=status,
            errcode=errcode,
        )

    def _set_lifetime(self, started: float, seconds: float) -> None:
        self._deadline = started + min(max(0.0, seconds), MAX_SESSION_LIFETIME)

    def _long_poll_timeout(self, wait: float) -> httpx.Timeout:
        base = self._client.timeout
        read = None if base.read is None else max(base.read, wait + _LONG_POLL_MARGIN)
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    # --- generation-specific --------------------------------------------------------------------------------

    def _session_url(self) -> str:
        raise NotImplementedError

    async def _poll(self, wait: float | None) -> _Revision | None:
        raise NotImplementedError

    async def _poll_now(self) -> _Revision | None:
        """One GET that the server must answer at once (a generation whose server may hold polls says so)."""
        return await self._poll(None)

    def _frame_revision(self, frame: dict[str, Any]) -> _Revision:
        raise NotImplementedError


def _check_url(url: str, what: str) -> None:
    """Refuse a URL httpx cannot send (bad host or port, a control character, a lone surrogate) by name."""
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):
        raise RendezvousProtocolError(f"{what}: the rendezvous URL is not a valid URL") from None


def json_body(response: httpx.Response) -> Any:
    """The response body as JSON, or ``None`` when it is not (I-JSON) JSON."""
    try:
        return loads(response.content)
    except ValueError:
        return None


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body of a success answer, which must be a JSON object; else :class:`RendezvousProtocolError`.

    The one reader of server answers: deep nesting, lone surrogates and non-finite numbers are refused here
    (see :mod:`qrlink_client._json`), so no field read from the object can hold them.
    """
    try:
        body = loads(response.content)
    except ValueError:
        raise RendezvousProtocolError(f"{what}: response is not JSON", status=response.status_code) from None
    if not isinstance(body, dict):
        raise RendezvousProtocolError(f"{what}: response is not a JSON object", status=response.status_code)
    return body


def _retry_hint(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (delta seconds) or Matrix ``retry_after_ms``."""
    header = response.headers.get("retry-after", "").strip()
    if _DELTA_SECONDS.fullmatch(header):
        return min(float(header), _MAX_RETRY_HINT)
    body = json_body(response)
    if isinstance(body, dict):
        value = body.get("retry_after_ms")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return min(value, int(_MAX_RETRY_HINT * 1000)) / 1000
    return None


def matrix_errcode(response: httpx.Response) -> str | None:
    """The ``errcode`` of a Matrix error body, if the body is one."""
    body = json_body(response)
    if isinstance(body, dict):
        errcode = body.get("errcode")
        if isinstance(errcode, str):
            return errcode
    return None


def unexpected(what: str, response: httpx.Response) -> RendezvousProtocolError:
    """The error for a status the protocol does not allow at this point."""
    errcode = matrix_errcode(response)
    # The errcode is the server's text: named in the message only when it is short (the attribute keeps it).
    suffix = f" {errcode}" if errcode and len(errcode) <= 64 else ""
    return RendezvousProtocolError(
        f"{what}: unexpected HTTP {response.status_code}{suffix}",
        status=response.status_code,
        errcode=errcode,
    )
