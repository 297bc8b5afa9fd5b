""":class:`Peer`, the request dispatcher: the op table, the handle tables of channels and handshakes, and the
turning of every request into a response (``{"ok": true, ...}`` or an error) without ever raising.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ... import __version__
from ...channel import HpkeProfile, SecureChannel
from ...request_fields import MissingField, Request, Response
from ...request_fields import required_str_field as _req_str
from .channel_ops import (
    op_accept_initiate,
    op_accept_ok,
    op_channel_close,
    op_channel_new,
    op_check_code,
    op_decrypt,
    op_encrypt,
    op_initiate,
    op_ok_message,
)
from .errors import BadJson, BadRequest, UnknownChannel, UnknownHandshake, UnknownOp, describe
from .handshake_ops import (
    Handshake,
    op_handshake_close,
    op_handshake_receive,
    op_handshake_send,
    op_handshake_start,
    op_handshake_status,
    op_handshake_wait,
)
from .qr_ops import op_qr_decode, op_qr_encode

if TYPE_CHECKING:
    import httpx

__all__ = ["ASYNC_OPS", "IMPLEMENTATION", "SYNC_OPS", "AsyncOp", "Peer", "SyncOp", "op_hello"]

IMPLEMENTATION = "qrlink"

SyncOp = Callable[["Peer", Request], Response]
AsyncOp = Callable[["Peer", Request], Awaitable[Response]]


class Peer:
    """The request dispatcher and its handle tables. :meth:`handle` answers one request and never raises."""

    def __init__(self, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.channels: dict[str, SecureChannel] = {}
        self.handshakes: dict[str, Handshake] = {}
        self._counter = itertools.count(1)
        self._http_client = http_client
        self._owns_client = http_client is None

    # -- dispatch --

    async def handle_line(self, line: str | bytes) -> Response:
        """Parse one JSON line and answer it (an error response for bad JSON)."""
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            request = json.loads(text)
        except UnicodeDecodeError:
            return _failure(BadJson("line is not valid UTF-8"), None)
        except json.JSONDecodeError as exc:
            return _failure(BadJson(f"line is not valid JSON: {exc.msg} at column {exc.colno}"), None)
        return await self.handle(request)

    async def handle(self, request: object) -> Response:
        """Answer one parsed request: ``{"ok": true, ...}`` or ``{"ok": false, "error", "message"}``."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict):
                raise BadRequest("a request must be a JSON object")
            op = request.get("op")
            if op is None:
                raise MissingField("field 'op' is required")
            if not isinstance(op, str):
                raise BadRequest("field 'op' must be a string")
            if op in SYNC_OPS:
                result = SYNC_OPS[op](self, request)
            elif op in ASYNC_OPS:
                result = await ASYNC_OPS[op](self, request)
            else:
                raise UnknownOp("no such op; 'hello' lists the ops")
        except Exception as exc:  # every failure becomes a response; the process keeps going
            return _failure(exc, request_id)
        response: Response = {"id": request_id} if request_id is not None else {}
        response["ok"] = True
        response.update(result)
        return response

    # -- handles --

    def new_handle(self, kind: str) -> str:
        """A fresh handle such as ``ch1`` or ``hs2``, unique within this peer."""
        return f"{kind}{next(self._counter)}"

    def channel(self, req: Request) -> SecureChannel:
        """The channel the request's ``channel`` field names."""
        handle = _req_str(req, "channel")
        try:
            return self.channels[handle]
        except KeyError:
            raise UnknownChannel("no open channel has that handle") from None

    def handshake(self, req: Request) -> Handshake:
        """The handshake the request's ``handshake`` field names."""
        handle = _req_str(req, "handshake")
        try:
            return self.handshakes[handle]
        except KeyError:
            raise UnknownHandshake("no handshake has that handle") from None

    def http_client(self) -> httpx.AsyncClient:
        """The HTTP client the transports share (created on first use)."""
        if self._http_client is None:
            import httpx

            self._http_client = httpx.AsyncClient(timeout=30.0)
        return self._http_client

    async def aclose(self) -> None:
        """Stop running handshakes and close the HTTP client this peer created."""
        for hs in self.handshakes.values():
            if hs.task is not None and not hs.task.done():
                hs.task.cancel()
        tasks = [hs.task for hs in self.handshakes.values() if hs.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for hs in self.handshakes.values():
            await hs.link.aclose()
        self.handshakes.clear()
        self.channels.clear()
        if self._owns_client and self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None


def _failure(exc: BaseException, request_id: object) -> Response:
    response: Response = {"id": request_id} if request_id is not None else {}
    response.update(ok=False, error=type(exc).__name__, message=describe(exc))
    return response


def op_hello(peer: Peer, req: Request) -> Response:
    """Name, version and capabilities of this implementation."""
    return {
        "implementation": IMPLEMENTATION,
        "version": __version__,
        "ops": sorted([*SYNC_OPS, *ASYNC_OPS]),
        "generations": [1, 2],
        "profiles": sorted(p.value for p in HpkeProfile),
    }


SYNC_OPS: dict[str, SyncOp] = {
    "hello": op_hello,
    "qr_decode": op_qr_decode,
    "qr_encode": op_qr_encode,
    "channel_new": op_channel_new,
    "channel_close": op_channel_close,
    "initiate": op_initiate,
    "accept_initiate": op_accept_initiate,
    "ok_message": op_ok_message,
    "accept_ok": op_accept_ok,
    "check_code": op_check_code,
    "encrypt": op_encrypt,
    "decrypt": op_decrypt,
}

ASYNC_OPS: dict[str, AsyncOp] = {
    "handshake_start": op_handshake_start,
    "handshake_status": op_handshake_status,
    "handshake_wait": op_handshake_wait,
    "handshake_send": op_handshake_send,
    "handshake_receive": op_handshake_receive,
    "handshake_close": op_handshake_close,
}
