"""Gen-2 rendezvous (MSC4388, newest text): JSON bodies, ``sequence_token``, txnId-idempotent PUT.

Served under the unstable prefix ``/_matrix/client/unstable/io.element.msc4388/rendezvous`` and, when enabled,
the stable ``/_matrix/client/v1/rendezvous``; the two differ only in the concurrent-write errcode.

``sequence_token`` is the store's per-session version as a decimal string: it changes on every successful
write, need not be unguessable and need not be unique across sessions (MSC4388 as amended; see
``docs/protocol.md``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from .auth import HOMESERVER_RETRY_AFTER_MS, HomeserverUnavailable, InvalidToken, access_token
from .config import CreatePolicy
from .context import ServerContext, sessions_full
from .http import MatrixError, Request, Response, json_response
from .logs import redact
from .protocol import (
    GEN2_STABLE_CONCURRENT_WRITE,
    GEN2_UNSTABLE_CONCURRENT_WRITE,
    M_BAD_JSON,
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_MISSING_PARAM,
    M_NOT_FOUND,
    M_NOT_JSON,
    M_TOO_LARGE,
    M_UNKNOWN,
    M_UNKNOWN_TOKEN,
)
from .push import DISCOVERY_FIELD, Push
from .routes import GEN2_LONG_POLL
from .store import Generation, Session, SessionNotFound, StoreFull, WriteOutcome, is_opaque_id

logger = logging.getLogger("rendezvous.gen2")

#: The longest decimal version we issue or parse; anything longer cannot be one of our tokens.
_MAX_TOKEN_DIGITS = 18


def json_body_limit(max_payload_bytes: int) -> int:
    """How many body bytes may carry ``max_payload_bytes`` of ``data``.

    JSON may escape every byte of the string as ``\\u00XX`` (six bytes each), and ``sequence_token`` plus the
    syntax need a little more; a body over this bound cannot be valid, so it is refused unread.
    """
    return 6 * max_payload_bytes + 4096


def _not_found() -> MatrixError:
    return MatrixError(404, M_NOT_FOUND, "Rendezvous session not found")


def _of_gen2(session: Session | None) -> Session:
    """``session`` if it is a live Gen-2 session; otherwise 404."""
    if session is None or session.generation is not Generation.GEN2:
        raise _not_found()
    return session


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise MatrixError(400, M_NOT_JSON, "Content not JSON") from None
    if not isinstance(value, dict):
        # Valid JSON of the wrong shape: M_BAD_JSON, as the spec and Synapse answer; M_NOT_JSON is for bodies
        # that do not parse at all.
        raise MatrixError(400, M_BAD_JSON, "Content must be a JSON object")
    return value


def _string_field(body: dict[str, Any], name: str) -> str:
    if name not in body:
        raise MatrixError(400, M_MISSING_PARAM, f"Missing '{name}'")
    value = body[name]
    if not isinstance(value, str):
        raise MatrixError(400, M_INVALID_PARAM, f"'{name}' must be a string")
    return value


def _data_bytes(body: dict[str, Any], limit: int) -> bytes:
    data = _string_field(body, "data")
    try:
        encoded = data.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped as \ud800 parses, but is no Unicode text
        raise MatrixError(400, M_INVALID_PARAM, "'data' is not valid Unicode") from None
    # MSC4388 limits data to 4096 bytes, measured (as Synapse does) in UTF-8 bytes, not characters.
    if len(encoded) > limit:
        raise MatrixError(413, M_TOO_LARGE, f"'data' is larger than {limit} bytes")
    return encoded


def _version_of(sequence_token: str) -> int:
    """The version a token names; 0 (never a version) for anything that is not one of ours."""
    if (
        0 < len(sequence_token) <= _MAX_TOKEN_DIGITS
        and sequence_token.isascii()
        and sequence_token.isdigit()
        and sequence_token[0] != "0"
    ):
        return int(sequence_token)
    return 0


def _check_not_navigation(request: Request) -> None:
    # MSC4388 "unsafe content": a GET that a browser makes as a top-level navigation must not render the
    # payload. These are Synapse's four rules.
    dest = request.header(b"sec-fetch-dest")
    if (
        (dest is not None and dest.strip().lower() != b"empty")
        or (request.header(b"sec-fetch-mode") or b"").strip().lower() == b"navigate"
        or (request.header(b"sec-fetch-user") or b"").strip() == b"?1"
        or (request.header(b"sec-fetch-site") or b"").strip().lower() == b"none"
    ):
        raise MatrixError(403, M_FORBIDDEN, "Rendezvous sessions cannot be opened by navigation")


def watch_frame(session: Session) -> str:
    """A frame of the WebSocket watch (push extension): ``{"sequence_token", "data"}``."""
    return json.dumps({"sequence_token": str(session.version), "data": session.data.decode("utf-8")})


def _long_poll_params(query_string: bytes) -> tuple[str | None, int]:
    """``since`` and ``timeout_ms`` (0 when absent) of a Gen-2 GET (push extension)."""
    since: str | None = None
    timeout_ms = 0
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name == "since":
            since = value
        elif name == "timeout_ms":
            if not (value.isascii() and value.isdigit()):
                raise MatrixError(400, M_INVALID_PARAM, "timeout_ms must be a non-negative integer")
            # Anything beyond the server maximum is capped anyway; bound the digits so int() stays cheap.
            timeout_ms = int(value[:12])
    return since, timeout_ms


class Gen2Api:
    """The Gen-2 routes under one prefix (unstable or stable)."""

    def __init__(self, context: ServerContext, push: Push, *, stable: bool) -> None:
        self._context = context
        self._store = context.store
        self._push = push
        #: The push advertisement, on every session answer (POST, GET, PUT).
        self._push_headers = push.headers
        self._counters = context.metrics.generations[Generation.GEN2]
        self._long_poll_route = context.metrics.routes[GEN2_LONG_POLL]
        self._concurrent_errcode = GEN2_STABLE_CONCURRENT_WRITE if stable else GEN2_UNSTABLE_CONCURRENT_WRITE
        settings = context.settings
        self._payload_limit = settings.max_payload_bytes
        self._body_limit = json_body_limit(settings.max_payload_bytes)

    # -- policy -------------------------------------------------------------------------------------------

    async def _may_create(self, request: Request) -> bool:
        """Whether the requester may create sessions. Raises 401 for a token the homeserver refuses."""
        context = self._context
        token = access_token(request)
        if token is not None and context.verifier is not None:
            try:
                await context.verifier.verify(token)
            except InvalidToken:
                raise MatrixError(401, M_UNKNOWN_TOKEN, "Unrecognised access token") from None
            except HomeserverUnavailable:
                raise MatrixError(
                    503,
                    M_UNKNOWN,
                    "The homeserver could not confirm the access token; try again later",
                    retry_after_ms=HOMESERVER_RETRY_AFTER_MS,
                ) from None
            return True
        return context.settings.gen2_create_policy is CreatePolicy.OPEN

    def _conflict(self) -> MatrixError:
        return MatrixError(409, self._concurrent_errcode, "sequence_token does not match")

    # -- routes -------------------------------------------------------------------------------------------

    async def discover(self, request: Request) -> Response:
        """``GET …/rendezvous`` → ``{"create_available": bool}`` for this requester."""
        await self._context.limit_session(request)
        body: dict[str, Any] = {"create_available": await self._may_create(request)}
        if self._push.discovery is not None:
            body[DISCOVERY_FIELD] = self._push.discovery
        return json_response(200, body)

    async def create(self, request: Request) -> Response:
        """``POST …/rendezvous {"data"}`` → ``{"id", "sequence_token", "expires_in_ms"}``."""
        context = self._context
        await context.limit_create(request)
        if not await self._may_create(request):
            raise MatrixError(403, M_FORBIDDEN, "You are not allowed to create rendezvous sessions")
        data = _data_bytes(_json_object(await request.read_body(self._body_limit)), self._payload_limit)
        try:
            session = await self._store.create(
                Generation.GEN2, data, ttl_ms=context.ttl_ms, max_sessions=context.settings.max_sessions
            )
        except StoreFull:
            raise sessions_full() from None
        self._counters.created.inc()
        context.expiry.created(session)
        logger.debug("session created", extra={"fields": {"generation": 2, "session": redact(session.id)}})
        return json_response(
            200,
            {
                "id": session.id,
                "sequence_token": str(session.version),
                "expires_in_ms": session.expires_in_ms,
            },
            self._push_headers,
        )

    async def get(self, request: Request, session_id: str) -> Response:
        """``GET …/rendezvous/{id}`` → ``{"data", "sequence_token", "expires_in_ms"}`` (no 304).

        With ``since`` and ``timeout_ms`` (push extension), a request whose ``since`` is the current token waits
        up to ``timeout_ms`` (capped at ``push_max_wait_seconds``) for the token to change, and answers with
        the state as it is then, changed or not.
        """
        _check_not_navigation(request)
        found = await self._context.limited_read(request, session_id)
        query = request.scope.get("query_string")
        since, timeout_ms = _long_poll_params(query) if query and self._push.long_poll else (None, 0)
        session = _of_gen2(found)
        if timeout_ms > 0 and since == str(session.version):
            if self._push.has_room():
                request.route = self._long_poll_route
                timeout_s = min(timeout_ms / 1000, self._push.max_wait_s)
                changed = await self._push.wait(request, session_id, session.version, timeout_s, self._counters)
                if changed is None or changed.generation is not Generation.GEN2:
                    raise _not_found()
                session = changed
            else:
                # Over the cap: answered at once, like an ordinary poll.
                self._counters.long_polls["overflow"].inc()
        return json_response(
            200,
            {
                "data": session.data.decode("utf-8"),
                "sequence_token": str(session.version),
                "expires_in_ms": session.expires_in_ms,
            },
            self._push_headers,
        )

    async def put(self, request: Request, session_id: str, txn_id: str | None = None) -> Response:
        """``PUT …/rendezvous/{id}[/{txnId}] {"sequence_token", "data"}`` → ``{"sequence_token"}``.

        With a txnId, a repeated txnId gets the recorded answer (409 included) without a new compare-and-swap.
        Without one (Synapse 1.157+, ruma), a retry whose token is the *previous* one and whose data equals
        the current data is taken as a repeat of the write that produced it: 200 with the current token.
        """
        if txn_id is not None and not is_opaque_id(txn_id):
            raise MatrixError(400, M_INVALID_PARAM, "Invalid transaction id")
        await self._context.limit_session(request)
        if not is_opaque_id(session_id):
            raise _not_found()
        body = _json_object(await request.read_body(self._body_limit))
        sequence_token = _string_field(body, "sequence_token")
        data = _data_bytes(body, self._payload_limit)
        expected = _version_of(sequence_token)
        try:
            # One store call: the generation check, the txnId lookup and the compare-and-swap together.
            result = await self._store.write_generation(
                session_id, data, generation=Generation.GEN2, expected_version=expected, txn_id=txn_id
            )
        except SessionNotFound:
            raise _not_found() from None
        if result.replayed:
            self._counters.replays.inc()
        if result.outcome is WriteOutcome.WRITTEN:
            if not result.replayed:
                self._counters.writes.inc()
            return json_response(200, {"sequence_token": str(result.version)}, self._push_headers)
        current = result.session
        if txn_id is None and expected == current.version - 1 and current.data == data:
            self._counters.replays.inc()
            return json_response(200, {"sequence_token": str(current.version)}, self._push_headers)
        if not result.replayed:
            self._counters.conflicts.inc()
        raise self._conflict()

    async def delete(self, request: Request, session_id: str) -> Response:
        """``DELETE …/rendezvous/{id}`` → 200 ``{}``; later operations on it are 404."""
        _of_gen2(await self._context.limited_read(request, session_id))
        if not await self._store.delete(session_id):
            raise _not_found()
        self._counters.deleted.inc()
        self._context.expiry.deleted(session_id)
        return json_response(200, {})
