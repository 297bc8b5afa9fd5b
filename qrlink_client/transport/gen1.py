"""Gen-1 rendezvous transport: MSC4108 (2024 revision), text/plain bodies versioned by ETag.

The creator POSTs to the server's create endpoint and learns an opaque session URL; both devices then GET
(with ``If-None-Match``), PUT (with ``If-Match``) and DELETE that URL. This is what Element Web, Element X and
Synapse speak.

The wire format: docs/protocol.md, "Gen-1 rendezvous".
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any
from urllib.parse import urljoin

import httpx

from ._engine import _Reply, _Revision, _Transport, json_body, json_object, matrix_errcode, unexpected
from .errors import (
    ConcurrentWrite,
    CreateNotAvailable,
    PayloadTooLarge,
    RendezvousProtocolError,
)
from .options import TransportOptions

__all__ = ["Gen1Transport"]

_TEXT_PLAIN = "text/plain"
# A delegating homeserver answers the create POST with 307 to the real rendezvous server; one hop is the norm,
# a few are tolerated, a loop is not.
_MAX_DELEGATIONS = 3
# An ETag is echoed in If-Match / If-None-Match, so it must be sendable: visible ASCII, as the entity-tag grammar
# (RFC 9110 §8.8.3) has it without obs-text, which httpx cannot encode in a request header.
_ETAG = re.compile(r"[\x21-\x7e]+")


class Gen1Transport(_Transport):
    """An MSC4108 (2024) rendezvous session, as creator (:meth:`create`) or joiner (:meth:`join`).

    The HTTP client is borrowed: the transport never closes it. Use one transport per session and one
    operation at a time (calls are serialised).
    """

    _generation = "Gen-1"

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        etag: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        """Wrap an existing session URL; prefer :meth:`create` and :meth:`join`."""
        super().__init__(client, options)
        self._url = url
        if etag is not None:
            self._commit_write(etag)

    def __repr__(self) -> str:
        # The session URL is a capability (whoever has it can join), so it stays out of reprs.
        return f"Gen1Transport(expires_in={self.expires_in!r}, push={self.push!r})"

    @property
    def url(self) -> str:
        """The session URL (goes into the QR code). Treat it as a secret until the session ends."""
        return self._url

    @property
    def sequence_token(self) -> None:
        """Gen-1 has no AAD binding; always ``None``."""
        return None

    @property
    def own_sequence_token(self) -> None:
        """Gen-1 has no AAD binding; always ``None``."""
        return None

    @property
    def replaced_sequence_token(self) -> None:
        """Gen-1 has no AAD binding; always ``None``."""
        return None

    # --- constructors ---------------------------------------------------------------------------------------

    @classmethod
    async def create(
        cls, client: httpx.AsyncClient, create_url: str, *, options: TransportOptions | None = None
    ) -> Gen1Transport:
        """POST an empty session to *create_url* (following a 307 delegation) and return its transport.

        Raises :class:`CreateNotAvailable` (403, or no rendezvous API: 404/405), :class:`PayloadTooLarge`,
        :class:`RendezvousUnavailable` and :class:`RendezvousProtocolError`.
        """
        transport = cls(client, "", options=options)
        url = create_url
        for _ in range(_MAX_DELEGATIONS + 1):
            reply = await transport._request(
                "POST",
                url,
                "create",
                content=b"",
                headers={"Content-Type": _TEXT_PLAIN},
                follow_redirects=False,
            )
            response = reply.response
            if response.status_code != 307:
                break
            location = response.headers.get("location")
            if not location:
                raise RendezvousProtocolError("create: 307 delegation without a Location header", status=307)
            # MSC4108 allows only 307 so that method and body survive; the Location may be relative.
            url = _resolve(url, location, "create: 307 Location", 307)
        else:
            raise RendezvousProtocolError("create: too many 307 delegations", status=307)
        status = response.status_code
        if status in (200, 201):
            transport._url = _resolve(url, _session_url_from(response), "create: session url", status)
            etag = _etag_of(response, "create")
            if etag:
                transport._commit_write(etag)
            transport._absorb_expiry(reply)
            return transport
        errcode = matrix_errcode(response)
        if status in (403, 404, 405):
            raise CreateNotAvailable(f"create: refused with HTTP {status}", status=status, errcode=errcode)
        if status == 413:
            raise PayloadTooLarge("create: payload too large", status=status, errcode=errcode)
        if 300 <= status < 400:
            raise RendezvousProtocolError(
                f"create: HTTP {status} is not a 307 delegation", status=status, errcode=errcode
            )
        raise unexpected("create", response)

    @classmethod
    async def join(
        cls, client: httpx.AsyncClient, session_url: str, *, options: TransportOptions | None = None
    ) -> Gen1Transport:
        """Join the session at *session_url* (from a QR code). Sends nothing yet: the first :meth:`send` or
        :meth:`receive` GETs the session to learn its ETag, as Element's clients do."""
        return cls(client, session_url, options=options)

    # --- operations -----------------------------------------------------------------------------------------

    async def send(self, data: str) -> None:
        """PUT *data* with ``If-Match`` and take the new ETag from the response.

        A joiner that knows no ETag yet first GETs without ``If-None-Match``. When a PUT's response is lost
        and the retried PUT meets 412, a GET tells whether the lost PUT was applied (the slot then holds
        exactly *data*); otherwise the 412 is a real concurrent write and raises :class:`ConcurrentWrite`.
        """
        async with self._lock:
            self._check_usable()
            if self._current is None:
                await self._learn_etag()
            if_match = self._current
            assert if_match is not None  # set by _learn_etag or raised
            try:
                reply = await self._request(
                    "PUT",
                    self._url,
                    "send",
                    content=data.encode("utf-8"),
                    headers={"Content-Type": _TEXT_PLAIN, "If-Match": if_match},
                )
            except BaseException:
                # Retries exhausted, expiry or cancellation: the PUT may have been applied without our knowing.
                # Remember the data so that its echo is adopted as our write, never delivered to ourselves.
                self._unconfirmed = data
                raise
            response = reply.response
            self._absorb_expiry(reply)
            status = response.status_code
            if 200 <= status < 300:
                etag = _etag_of(response, "send")
                if not etag:
                    raise RendezvousProtocolError("send: PUT succeeded without a new ETag", status=status)
                self._commit_write(etag)
                return
            if status == 412:
                if reply.attempts > 1 and await self._lost_put_applied(data, if_match):
                    return
                raise ConcurrentWrite(
                    "send: the session changed since it was last read (412)",
                    status=status,
                    errcode=_unstable_errcode(response),
                )
            if status == 404:
                raise self._gone(status, matrix_errcode(response))
            if status == 413:
                raise PayloadTooLarge("send: payload too large", status=status, errcode=matrix_errcode(response))
            raise unexpected("send", response)

    # --- internals ------------------------------------------------------------------------------------------

    async def _learn_etag(self) -> None:
        """The scanning side's first GET: no ``If-None-Match``, just learn the current ETag."""
        revision = await self._get(None, conditional=False)
        if revision is None:
            raise RendezvousProtocolError("send: unconditional GET answered 304")
        self._seen.add(revision.tag)
        self._current = revision.tag

    async def _lost_put_applied(self, data: str, if_match: str) -> bool:
        """After a retried PUT met 412: does the slot hold our data under a new ETag (the lost PUT landed)?"""
        revision = await self._get(None, conditional=False)
        if revision is None or revision.tag == if_match or revision.data != data:
            # A real concurrent write. _current still holds the old ETag, so the peer's payload is delivered.
            return False
        self._commit_write(revision.tag)
        return True

    def _session_url(self) -> str:
        return self._url

    async def _poll(self, wait: float | None) -> _Revision | None:
        return await self._get(wait, conditional=True)

    async def _poll_now(self) -> _Revision | None:
        return await self._get(None, conditional=True, now=True)

    async def _get(self, wait: float | None, *, conditional: bool, now: bool = False) -> _Revision | None:
        """One GET: ``If-None-Match: <current ETag>`` if *conditional*, ``Prefer: wait`` if *wait*, and
        ``Prefer: wait=0`` if the answer is needed *now*."""
        headers = {}
        if conditional and self._current is not None:
            headers["If-None-Match"] = self._current
        extra: dict[str, Any] = {}
        if wait is not None:
            headers["Prefer"] = f"wait={int(wait)}"  # RFC 7240 wait is whole seconds
            extra["timeout"] = self._long_poll_timeout(wait)
        elif now and "If-None-Match" in headers:
            # A poll that names the current ETag may be held by a server (ours holds it up to hold_ms); this one
            # must be answered at once (receive_pending before an out-of-turn write). Servers without holds
            # ignore the preference.
            headers["Prefer"] = "wait=0"
        reply = await self._request("GET", self._url, "receive", headers=headers, **extra)
        response = reply.response
        self._absorb_expiry(reply)
        status = response.status_code
        if status == 304:
            etag = _etag_of(response, "receive")
            if etag:
                self._current = etag
            return None
        if status == 200:
            etag = _etag_of(response, "receive")
            if not etag:
                raise RendezvousProtocolError("receive: 200 without an ETag", status=status)
            media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != _TEXT_PLAIN:
                raise RendezvousProtocolError("receive: 200 whose content type is not text/plain", status=status)
            try:
                body = response.content.decode("utf-8")
            except UnicodeDecodeError:
                raise RendezvousProtocolError("receive: body is not UTF-8", status=status) from None
            return _Revision(etag, body, authoritative=True)
        if status == 404:
            raise self._gone(status, matrix_errcode(response))
        if wait is not None and self._long_poll_refused(status):
            return None
        raise unexpected("receive", response)

    def _min_long_poll_wait(self) -> float:
        return 1.0  # ``Prefer: wait`` counts whole seconds

    def _frame_revision(self, frame: dict[str, Any]) -> _Revision:
        etag, data = frame.get("etag"), frame.get("data")
        if isinstance(etag, str) and etag and data is None and "data_base64" in frame:
            # A payload that is not UTF-8 (docs/push.md): refused as a polled body would be.
            raise RendezvousProtocolError("receive: body is not UTF-8")
        if not isinstance(etag, str) or not etag or not isinstance(data, str):
            raise RendezvousProtocolError("receive: watch frame lacks a string etag and data")
        if not _ETAG.fullmatch(etag):
            raise RendezvousProtocolError("receive: watch frame etag is not visible ASCII")
        return _Revision(etag, data, authoritative=False)

    def _absorb_expiry(self, reply: _Reply) -> None:
        # Only session responses describe the session: error responses may carry ``Expires: <now>`` as a plain
        # do-not-cache marker (our server's 404 does).
        status = reply.response.status_code
        if not (200 <= status < 300 or status == 304):
            return
        lifetime = _lifetime(reply.response)
        if lifetime is not None:
            self._set_lifetime(reply.started, lifetime)


def _session_url_from(response: httpx.Response) -> str:
    body = json_object(response, "create")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise RendezvousProtocolError("create: response has no session url", status=response.status_code)
    if not url.startswith(("http://", "https://")) and "://" in url:
        raise RendezvousProtocolError("create: session url is not http(s)", status=response.status_code)
    return url


def _resolve(base: str, reference: str, what: str, status: int) -> str:
    """``reference`` (a Location or session URL, perhaps relative) against ``base``."""
    try:
        return urljoin(base, reference)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise RendezvousProtocolError(f"{what} is not a valid URL", status=status) from None


def _etag_of(response: httpx.Response, what: str) -> str | None:
    """The response's ETag (``None`` when absent or empty); one that cannot be sent back is a protocol error."""
    etag: str | None = response.headers.get("etag")
    if not etag:
        return None
    if not _ETAG.fullmatch(etag):
        raise RendezvousProtocolError(f"{what}: ETag is not visible ASCII", status=response.status_code)
    return etag


def _lifetime(response: httpx.Response) -> float | None:
    """Seconds the session has left: ``Expires - Date`` of one response.

    Only the difference of two timestamps written by the same server clock is used, never ``Expires`` against
    the local clock: a device whose clock is off would otherwise give up early or poll a dead session
    (js-sdk#5141).
    """
    expires, date = response.headers.get("expires"), response.headers.get("date")
    if not expires or not date:
        return None
    try:
        expires_at = email.utils.parsedate_to_datetime(expires)
        dated = email.utils.parsedate_to_datetime(date)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        if dated.tzinfo is None:
            dated = dated.replace(tzinfo=dt.UTC)
        return (expires_at - dated).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        # ``Expires: 0`` (which HTTP allows), or a year or offset beyond what a date can hold: no lifetime is
        # known, and the server's 404 still ends the session. A huge but valid one is capped by the engine.
        return None


def _unstable_errcode(response: httpx.Response) -> str | None:
    """MSC4108 sends ``M_UNKNOWN`` + ``org.matrix.msc4108.errcode: M_CONCURRENT_WRITE``; prefer the latter."""
    body = json_body(response)
    if isinstance(body, dict):
        code = body.get("org.matrix.msc4108.errcode", body.get("errcode"))
        if isinstance(code, str):
            return code
    return None
