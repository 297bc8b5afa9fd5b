"""Gen-2 rendezvous transport: MSC4388, JSON bodies versioned by ``sequence_token``.

Sessions live at ``{base_url}{prefix}/{rendezvous_id}``. Sends use ``PUT …/{id}/{txnId}`` with a fresh random
txnId per send, so that a retry of the *same* request after a lost response is answered from the server's
record instead of being applied twice; servers that lack that route (Synapse 1.157+, ruma) get the older ``PUT
…/{id}``, whose narrower idempotence rule (previous token + identical data → current token) covers the same
retry.

The wire format: docs/protocol.md, "Gen-2 rendezvous".
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ._engine import MAX_SESSION_LIFETIME, _Revision, _Transport, json_object, matrix_errcode, unexpected
from .errors import (
    ConcurrentWrite,
    CreateNotAvailable,
    PayloadTooLarge,
    RendezvousProtocolError,
)
from .options import TransportOptions
from .push import PushSupport

__all__ = ["Gen2Discovery", "Gen2Prefix", "Gen2Transport", "new_txn_id", "rendezvous_endpoint"]

_MAX_IDENTIFIER_BYTES = 255  # opaque identifier grammar; the QR and the AAD carry a u8 length
# Statuses/errcodes with which a server says "no such route": it predates ``PUT /{id}/{txnId}``.
_NO_ROUTE_STATUSES = frozenset({404, 405, 400})


class Gen2Prefix(enum.Enum):
    """Where the MSC4388 API lives under the homeserver's base URL."""

    UNSTABLE = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
    """What Synapse and tuwunel serve today."""
    STABLE = "/_matrix/client/v1/rendezvous"
    """The path once MSC4388 is merged."""


@dataclass(frozen=True)
class Gen2Discovery:
    """The answer of ``GET …/rendezvous``."""

    create_available: bool
    """Whether this requester may create a session (``False`` also when the API is off: 403/404)."""
    push: PushSupport | None
    """qrlink's push extension, when the server advertises it."""


def rendezvous_endpoint(base_url: str, prefix: Gen2Prefix = Gen2Prefix.UNSTABLE) -> str:
    """The rendezvous collection URL for a homeserver *base_url*, with or without a trailing slash.

    Only this request URL is normalised; the AAD keeps the base URL exactly as the QR code carries it.
    """
    return base_url.rstrip("/") + prefix.value


def new_txn_id() -> str:
    """A fresh transaction id: 128 random bits, URL-safe (it is scoped to the session, not to a device)."""
    return secrets.token_urlsafe(16)


class Gen2Transport(_Transport):
    """An MSC4388 rendezvous session, as creator (:meth:`create`) or joiner (:meth:`join`).

    :attr:`sequence_token` is the token a secure channel binds into its AAD (docs/protocol.md, "AAD"): seal with
    it just before :meth:`send`; open a received payload with it as read before :meth:`receive` (the revision the
    peer wrote over). The HTTP client is borrowed, never closed by the transport.
    """

    _generation = "Gen-2"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        rendezvous_id: str,
        *,
        prefix: Gen2Prefix = Gen2Prefix.UNSTABLE,
        options: TransportOptions | None = None,
    ) -> None:
        """Wrap a session by id; prefer :meth:`create` and :meth:`join`."""
        super().__init__(client, options)
        _check_identifier(rendezvous_id, "rendezvous id")
        self._base_url = base_url
        self._prefix = prefix
        self._rendezvous_id = rendezvous_id
        self._url = f"{rendezvous_endpoint(base_url, prefix)}/{quote(rendezvous_id, safe='')}"
        self._legacy_put = False

    def __repr__(self) -> str:
        # Neither the id nor the tokens: the id lets anyone join, the tokens let anyone write.
        return f"Gen2Transport(expires_in={self.expires_in!r}, push={self.push!r})"

    @property
    def base_url(self) -> str:
        """The homeserver base URL exactly as given (the bytes that go into the QR code and the AAD)."""
        return self._base_url

    @property
    def rendezvous_id(self) -> str:
        """The session id (goes into the QR code)."""
        return self._rendezvous_id

    @property
    def prefix(self) -> Gen2Prefix:
        """The API prefix in use."""
        return self._prefix

    @property
    def session_url(self) -> str:
        """``{base_url}{prefix}/{rendezvous_id}``."""
        return self._url

    @property
    def sequence_token(self) -> str | None:
        """The server's current token as last seen: the next send PUTs with it; the sender seals with it, and the
        receiver opens the peer's next payload with it as read before receiving."""
        return self._current

    @property
    def own_sequence_token(self) -> str | None:
        """The token of this side's own last PUT/POST (under ping-pong, the one the peer's reply is sealed with)."""
        return self._own

    @property
    def replaced_sequence_token(self) -> str | None:
        """The token this side's own last PUT was made with, i.e. the revision that write replaced (``None``
        after create).

        A peer that writes before it has read that PUT (a message that ends the login, sent out of turn) seals
        with this token rather than with :attr:`own_sequence_token`.
        """
        return self._replaced

    @property
    def uses_legacy_put(self) -> bool:
        """Whether the server lacked ``PUT /{id}/{txnId}`` and sends now use the older ``PUT /{id}``."""
        return self._legacy_put

    # --- constructors ---------------------------------------------------------------------------------------

    @classmethod
    async def discover(
        cls,
        client: httpx.AsyncClient,
        base_url: str,
        access_token: str | None = None,
        *,
        prefix: Gen2Prefix = Gen2Prefix.UNSTABLE,
        options: TransportOptions | None = None,
    ) -> Gen2Discovery:
        """``GET …/rendezvous``: may this requester create a session, and does the server offer push?

        The same as :func:`qrlink_client.discovery.discover_gen2`, where discovery of both generations lives.
        """
        # Imported here: discovery builds on this module.
        from ..discovery import discover_gen2

        return await discover_gen2(client, base_url, access_token, prefix=prefix, options=options)

    @classmethod
    async def create(
        cls,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        access_token: str | None = None,
        prefix: Gen2Prefix = Gen2Prefix.UNSTABLE,
        options: TransportOptions | None = None,
    ) -> Gen2Transport:
        """POST ``{"data": ""}`` and return the new session's transport (:attr:`rendezvous_id` goes into the
        QR).

        Raises :class:`CreateNotAvailable` (401, 403, API off), :class:`RendezvousUnavailable`,
        :class:`RendezvousProtocolError`.
        """
        probe = _Transport(client, options)
        reply = await probe._request(
            "POST",
            rendezvous_endpoint(base_url, prefix),
            "create",
            json={"data": ""},
            headers=_auth(access_token),
        )
        response = reply.response
        status = response.status_code
        if status in (200, 201):
            body = json_object(response, "create")
            rendezvous_id = body.get("id")
            if not isinstance(rendezvous_id, str):
                raise RendezvousProtocolError("create: response has no string id", status=status)
            _check_identifier(rendezvous_id, "rendezvous id")
            token = _token_of(body, "create", status)
            transport = cls(client, base_url, rendezvous_id, prefix=prefix, options=options)
            transport._push = probe.push
            transport._commit_write(token)
            transport._absorb_expiry(body, reply.started, "create", status)
            return transport
        errcode = matrix_errcode(response)
        if status in (401, 403, 404):
            raise CreateNotAvailable(f"create: refused with HTTP {status}", status=status, errcode=errcode)
        if status == 413:
            raise PayloadTooLarge("create: payload too large", status=status, errcode=errcode)
        raise unexpected("create", response)

    @classmethod
    async def join(
        cls,
        client: httpx.AsyncClient,
        base_url: str,
        rendezvous_id: str,
        *,
        prefix: Gen2Prefix = Gen2Prefix.UNSTABLE,
        options: TransportOptions | None = None,
    ) -> Gen2Transport:
        """Join a session (base URL and id from the QR code) and GET it once, so that :attr:`sequence_token`
        is the token to seal the first message with. The slot's content at that moment is the creator's empty
        payload and is not delivered: in both MSCs the joiner speaks first."""
        transport = cls(client, base_url, rendezvous_id, prefix=prefix, options=options)
        revision = await transport._poll(None)
        assert revision is not None  # a plain GET always answers with the slot
        transport._seen.add(revision.tag)
        transport._current = revision.tag
        return transport

    # --- operations -----------------------------------------------------------------------------------------

    async def send(self, data: str) -> None:
        """PUT *data* with the current :attr:`sequence_token` under a fresh txnId; adopt the returned token.

        Network errors and 5xx are retried with the *same* request (same txnId and body), which a conforming
        server answers from its record: the payload is applied once and the token advances once. A 409 after
        such a retry is checked with a GET (the slot holding exactly *data* under a new token means our write
        landed); any other 409 raises :class:`ConcurrentWrite`.
        """
        async with self._lock:
            self._check_usable()
            token = self._current
            assert token is not None  # create() and join() always learn one
            body = {"sequence_token": token, "data": data}
            attempts = 0
            try:
                if not self._legacy_put:
                    reply = await self._request("PUT", f"{self._url}/{new_txn_id()}", "send", json=body)
                    attempts = reply.attempts
                    if _lacks_txn_route(reply.response):
                        self._legacy_put = True
                if self._legacy_put:
                    reply = await self._request("PUT", self._url, "send", json=body)
                    attempts += reply.attempts
            except BaseException:
                # Retries exhausted, expiry or cancellation: the PUT may have been applied without our knowing.
                # Remember the data so that its echo is adopted as our write, never delivered to ourselves.
                self._unconfirmed, self._unconfirmed_base = data, token
                raise
            response = reply.response
            status = response.status_code
            if status in (200, 201):
                new_token = _token_of(json_object(response, "send"), "send", status)
                self._commit_write(new_token, replaced=token)
                return
            errcode = matrix_errcode(response)
            if status == 409:
                if attempts > 1 and await self._lost_put_applied(data, token):
                    return
                raise ConcurrentWrite(
                    "send: the session changed since it was last read (409)", status=status, errcode=errcode
                )
            if status == 404:
                raise self._gone(status, errcode)
            if status == 413:
                raise PayloadTooLarge("send: payload too large", status=status, errcode=errcode)
            raise unexpected("send", response)

    # --- internals ------------------------------------------------------------------------------------------

    async def _lost_put_applied(self, data: str, sent_token: str) -> bool:
        """After a retried PUT met 409: whether the slot holds our data under a new token (our lost PUT
        applied)."""
        revision = await self._poll(None)
        if revision is None or revision.tag == sent_token or revision.data != data:
            return False
        self._commit_write(revision.tag, replaced=sent_token)
        return True

    def _session_url(self) -> str:
        return self._url

    async def _poll(self, wait: float | None) -> _Revision | None:
        extra: dict[str, Any] = {}
        if wait is not None and self._current is not None:
            extra["params"] = {"since": self._current, "timeout_ms": str(int(wait * 1000))}
            extra["timeout"] = self._long_poll_timeout(wait)
        reply = await self._request("GET", self._url, "receive", **extra)
        response = reply.response
        status = response.status_code
        if status == 200:
            body = json_object(response, "receive")
            token = _token_of(body, "receive", status)
            data = body.get("data")
            if not isinstance(data, str):
                raise RendezvousProtocolError("receive: data is not a string", status=status)
            self._absorb_expiry(body, reply.started, "receive", status)
            return _Revision(token, data, authoritative=True)
        if status == 404:
            raise self._gone(status, matrix_errcode(response))
        if wait is not None and self._long_poll_refused(status):
            return None
        raise unexpected("receive", response)

    def _frame_revision(self, frame: dict[str, Any]) -> _Revision:
        token, data = frame.get("sequence_token"), frame.get("data")
        if not isinstance(token, str) or not token or not isinstance(data, str):
            raise RendezvousProtocolError("receive: watch frame lacks a string sequence_token and data")
        _check_identifier(token, "sequence_token", "receive")
        return _Revision(token, data, authoritative=False)

    def _absorb_expiry(self, body: dict[str, Any], started: float, what: str, status: int) -> None:
        # expires_in_ms is relative on purpose (MSC4388 replaced expires_ts because of clock skew): count it
        # from when the request was sent, on the local monotonic clock, which errs on the early side.
        value = body.get("expires_in_ms")
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RendezvousProtocolError(f"{what}: expires_in_ms is not a non-negative integer", status=status)
        # Capped before the division: 10**400 ms is a valid JSON integer but no float.
        self._set_lifetime(started, min(value, int(MAX_SESSION_LIFETIME * 1000)) / 1000)


def _auth(access_token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"} if access_token else {}


def _token_of(body: dict[str, Any], what: str, status: int) -> str:
    token = body.get("sequence_token")
    if not isinstance(token, str):
        raise RendezvousProtocolError(f"{what}: response has no string sequence_token", status=status)
    _check_identifier(token, "sequence_token", what, status)
    return token


def _check_identifier(value: str, name: str, what: str = "rendezvous", status: int | None = None) -> None:
    """An id or sequence token: 1 to 255 bytes of UTF-8. It goes into URLs, JSON bodies and the channel's AAD,
    so a lone surrogate (which has no UTF-8) is refused here rather than failing in each of them."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise RendezvousProtocolError(f"{what}: {name} is not valid Unicode", status=status) from None
    if not value or size > _MAX_IDENTIFIER_BYTES:
        raise RendezvousProtocolError(f"{what}: {name} is empty or longer than 255 bytes", status=status)


def _lacks_txn_route(response: httpx.Response) -> bool:
    """Whether the server answered ``PUT /{id}/{txnId}`` with "no such route" rather than about the session.

    Synapse answers 404 ``M_UNRECOGNIZED``; other frameworks 405, or 400 ``M_UNRECOGNIZED``. A missing
    *session* is 404 ``M_NOT_FOUND`` and must not trigger the fallback.
    """
    if response.status_code not in _NO_ROUTE_STATUSES:
        return False
    if response.status_code == 405:
        return True
    return matrix_errcode(response) == "M_UNRECOGNIZED"
