"""Gen-1 rendezvous (MSC4108, 2024 text): text/plain payloads, strong ETags, If-Match / If-None-Match.

Every shipping Element client speaks this generation. What they insist on (``docs/protocol.md``):

* ``Content-Type`` of a 200 is exactly ``text/plain`` (js-sdk compares with ``!==``; a charset breaks it);
* every 200 and 304, and the 201 of the POST, carries ``ETag``, ``Expires`` and ``Last-Modified``;
* a PUT returns the new ``ETag``; the ETag changes on every write, even for an identical body.

The ETag is ``"<tag>-<version>"``: ``tag`` is 8 characters derived from the session id (so ETags of different
sessions never coincide) and ``version`` is the store's per-session write counter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time

from .context import ServerContext, sessions_full
from .http import (
    APPLICATION_JSON,
    COMMON_HEADERS,
    TEXT_PLAIN,
    Headers,
    MatrixError,
    Request,
    Response,
    http_date,
    json_bytes,
    media_type,
)
from .logs import redact
from .protocol import (
    GEN1_PATH,
    M_CONCURRENT_WRITE,
    M_INVALID_PARAM,
    M_MISSING_PARAM,
    M_NOT_FOUND,
    M_UNKNOWN,
    MSC4108_ERRCODE_FIELD,
)
from .push import Push, preferred_wait
from .routes import GEN1_HOLD, GEN1_LONG_POLL
from .store import Generation, Session, SessionNotFound, StoreFull, WriteOutcome, is_opaque_id

logger = logging.getLogger("rendezvous.gen1")

# RFC 9110 entity-tag: optional W/, then a quoted run of etagc characters. Anything else is malformed.
_ENTITY_TAG_RE = re.compile(rb'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')
_OUR_ETAG_RE = re.compile(rb'"([A-Za-z0-9_-]{8})-([1-9][0-9]{0,17})"')


def etag_tag(session_id: str) -> bytes:
    """The per-session component of the ETags: 48 bits of a hash of the id (the id itself is a capability)."""
    return base64.urlsafe_b64encode(hashlib.sha256(session_id.encode()).digest()[:6])


def etag(session_id: str, version: int) -> bytes:
    """The strong, quoted ETag of ``version`` of a session."""
    return b'"%s-%d"' % (etag_tag(session_id), version)


def _dates(session: Session) -> Headers:
    return [
        (b"expires", http_date(session.expires_at_ms // 1000)),
        (b"last-modified", http_date(session.last_modified_ms // 1000)),
    ]


def _session_headers(
    session: Session, version: int, content_type: bytes = TEXT_PLAIN, extra: Headers | None = None
) -> Headers:
    headers = [
        (b"content-type", content_type),
        (b"etag", etag(session.id, version)),
        *_dates(session),
        *COMMON_HEADERS,
    ]
    if extra:
        headers += extra
    return headers


def watch_frame(session: Session) -> str:
    """A frame of the WebSocket watch (push extension): ``{"etag", "data"}``.

    A Gen-1 payload is any bytes a PUT sent; one that is not UTF-8 goes as ``data_base64`` (standard base64)
    instead of ``data``, so that every payload fits a text frame and decoding never fails mid-watch.
    """
    tag = etag(session.id, session.version).decode()
    try:
        return json.dumps({"etag": tag, "data": session.data.decode("utf-8")})
    except UnicodeDecodeError:
        return json.dumps({"etag": tag, "data_base64": base64.b64encode(session.data).decode("ascii")})


def _not_found() -> MatrixError:
    return MatrixError(404, M_NOT_FOUND, "Rendezvous session not found")


def _check_text_plain(request: Request) -> None:
    value = request.header(b"content-type")
    if value is None:
        raise MatrixError(400, M_MISSING_PARAM, "Content-Type header is required")
    # MSC4108 asks for exactly text/plain, and Synapse refuses anything else: a client that passes here must
    # not then fail against Synapse. Element's clients send exactly text/plain.
    if media_type(value) != TEXT_PLAIN:
        raise MatrixError(400, M_INVALID_PARAM, "Content-Type must be text/plain")
    if value.strip().lower() != TEXT_PLAIN:
        raise MatrixError(
            400, M_INVALID_PARAM, "Content-Type must be exactly text/plain, without parameters such as charset"
        )


#: Stands for a weak ETag in If-Match: never a version, and worth its own error message.
_WEAK = -1


def _expected_version(session_id: str, if_match: bytes | None) -> int:
    """The version an If-Match names: 0 (never a version) for another ETag, ``_WEAK`` for ``W/"…"``."""
    if if_match is None:
        raise MatrixError(400, M_MISSING_PARAM, "If-Match header is required")
    value = if_match.strip()
    if _ENTITY_TAG_RE.fullmatch(value) is None:
        raise MatrixError(400, M_INVALID_PARAM, "If-Match must be a single ETag as received")
    if value.startswith(b"W/"):
        # A weak ETag never matches under If-Match's strong comparison. Seeing one almost always means a proxy
        # compressed a response and weakened its ETag (synapse #18155, #18178): say so in the 412.
        return _WEAK
    ours = _OUR_ETAG_RE.fullmatch(value)
    if ours is None or ours.group(1) != etag_tag(session_id):
        return 0
    return int(ours.group(2))


def _concurrent_write(message: str, headers: Headers | None = None) -> MatrixError:
    return MatrixError(
        412,
        M_UNKNOWN,
        message,
        extra={MSC4108_ERRCODE_FIELD: M_CONCURRENT_WRITE},
        headers=headers,
    )


def _if_none_match_hits(header: bytes, current: bytes) -> bool:
    # If-None-Match uses the weak comparison: W/ is ignored. Unparseable members simply do not match.
    for member in header.split(b","):
        member = member.strip()
        if member == b"*" or member.removeprefix(b"W/") == current:
            return True
    return False


class Gen1Api:
    """The Gen-1 routes: create on the collection, then GET / PUT / DELETE on the session URL."""

    def __init__(self, context: ServerContext, push: Push) -> None:
        self._context = context
        self._store = context.store
        self._push = push
        #: The push advertisement, on every session answer (POST, GET, PUT).
        self._push_headers = push.headers
        self._counters = context.metrics.generations[Generation.GEN1]
        self._long_poll_route = context.metrics.routes[GEN1_LONG_POLL]
        self._hold_route = context.metrics.routes[GEN1_HOLD]
        #: Whether plain polls naming the current ETag are held (``hold_enabled`` and room under the caps).
        self._hold = push.hold_enabled

    async def create(self, request: Request) -> Response:
        """``POST …/rendezvous``: text/plain body (may be empty) → 201 ``{"url"}``. Unauthenticated."""
        context = self._context
        await context.limit_create(request)
        _check_text_plain(request)
        data = await request.read_body(context.settings.max_payload_bytes)
        base = context.settings.public_base_url or context.proxies.origin(request)
        try:
            session = await self._store.create(
                Generation.GEN1, data, ttl_ms=context.ttl_ms, max_sessions=context.settings.max_sessions
            )
        except StoreFull:
            raise sessions_full() from None
        self._counters.created.inc()
        context.expiry.created(session)
        logger.debug("session created", extra={"fields": {"generation": 1, "session": redact(session.id)}})
        body = json_bytes({"url": f"{base}{GEN1_PATH}/{session.id}"})
        headers = _session_headers(session, session.version, APPLICATION_JSON, self._push_headers)
        return Response(201, headers, body)

    async def get(self, request: Request, session_id: str) -> Response:
        """``GET <session URL>``: 200 with the payload, or 304 when If-None-Match names the current ETag.

        A plain GET whose If-None-Match is exactly the current ETag is held (``hold_enabled``): 200 as soon as a
        write lands, 404 when the session ends, 304 after ``hold_ms``.

        With ``Prefer: wait=N`` (push extension) a request that would get 304 waits up to N seconds (capped at
        ``push_max_wait_seconds``) for the ETag to change: 200 as soon as it does, else 304 at the deadline.
        """
        session = await self._context.limited_read(request, session_id)
        if session is None or session.generation is not Generation.GEN1:
            raise _not_found()
        headers = _session_headers(session, session.version, extra=self._push_headers)
        if_none_match = request.header(b"if-none-match")
        if if_none_match is not None and _if_none_match_hits(if_none_match, headers[1][1]):
            prefer = request.header(b"prefer")
            wait = preferred_wait(prefer) if prefer is not None else None
            if wait is None:
                if self._hold and if_none_match.strip() == headers[1][1] and request.method == "GET":
                    # Held here, not in a helper coroutine: every frame a held poll keeps counts, and so do
                    # the headers (rebuilt when it ends), the request's parsed header dict and the payload the
                    # client has already (a 304 carries none).
                    del headers, if_none_match, prefer
                    session = session.without_data()
                    request.route = self._hold_route
                    address = self._context.proxies.client_ip(request)
                    request.forget_headers()
                    changed = await self._push.hold(request, address, session)
                    if changed is None or changed.generation is not Generation.GEN1:
                        raise _not_found()
                    if changed.version == session.version:
                        return Response(304, _session_headers(session, session.version, extra=self._push_headers))
                    return Response(
                        200, _session_headers(changed, changed.version, extra=self._push_headers), changed.data
                    )
                return Response(304, headers)
            if not wait or not self._push.long_poll:
                return Response(304, headers)
            return await self._long_poll(request, session, if_none_match, min(wait, self._push.max_wait_s))
        return Response(200, headers, session.data)

    async def _long_poll(self, request: Request, session: Session, if_none_match: bytes, wait: int) -> Response:
        if not self._push.has_room():
            # Over the cap: an ordinary conditional GET. The client's poll interval paces it.
            self._counters.long_polls["overflow"].inc()
            return Response(304, _session_headers(session, session.version, extra=self._push_headers))
        request.route = self._long_poll_route
        changed = await self._push.wait(request, session.id, session.version, wait, self._counters)
        if changed is None or changed.generation is not Generation.GEN1:
            raise _not_found()
        headers = _session_headers(changed, changed.version, extra=self._push_headers)
        headers.append((b"preference-applied", b"wait=%d" % wait))
        if _if_none_match_hits(if_none_match, headers[1][1]):
            return Response(304, headers)
        return Response(200, headers, changed.data)

    async def put(self, request: Request, session_id: str) -> Response:
        """``PUT <session URL>`` with ``If-Match``: 202 + new ETag, or 412 when the ETag is not current."""
        context = self._context
        await context.limit_session(request)
        if not is_opaque_id(session_id):
            raise _not_found()
        _check_text_plain(request)
        expected = _expected_version(session_id, request.header(b"if-match"))
        data = await request.read_body(context.settings.max_payload_bytes)
        try:
            # One store call: the generation check and the compare-and-swap together.
            result = await self._store.write_generation(
                session_id, data, generation=Generation.GEN1, expected_version=expected
            )
        except SessionNotFound:
            raise _not_found() from None
        if result.outcome is WriteOutcome.CONFLICT:
            self._counters.conflicts.inc()
            message = "ETag does not match"
            if expected == _WEAK:
                message = "Weak ETags never match; is a proxy compressing rendezvous responses?"
            # No ETag here on purpose: js-sdk adopts the ETag of any PUT answer, and adopting the current one
            # would make it skip the very payload that caused the conflict.
            raise _concurrent_write(message, _dates(result.session))
        self._counters.writes.inc()
        return Response(202, _session_headers(result.session, result.version, extra=self._push_headers))

    async def delete(self, request: Request, session_id: str) -> Response:
        """``DELETE <session URL>``: 204, then every operation on it is 404."""
        session = await self._context.limited_read(request, session_id)
        if session is None or session.generation is not Generation.GEN1:
            raise _not_found()
        if not await self._store.delete(session_id):
            raise _not_found()
        self._counters.deleted.inc()
        self._context.expiry.deleted(session_id)
        now = http_date(int(time.time()))
        headers: Headers = [(b"content-type", TEXT_PLAIN), (b"expires", now), (b"last-modified", now)]
        return Response(204, [*headers, *COMMON_HEADERS])
