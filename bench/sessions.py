"""Rendezvous operations of both generations over :class:`bench.http1.Connection`.

The same calls serve our server and Synapse: only the paths of the unstable APIs are used, which both offer.
``token`` is the Gen-1 ``ETag`` or the Gen-2 ``sequence_token``.
"""

from __future__ import annotations

import json
import os
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.http1 import Connection, Reply
from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH

_TEXT = ("Content-Type", "text/plain")
_JSON = ("Content-Type", "application/json")


class UnexpectedStatus(Exception):
    """The server answered with a status the scenario does not expect."""

    def __init__(self, operation: str, status: int) -> None:
        super().__init__(f"{operation}: HTTP {status}")
        self.status = status


@dataclass
class Handle:
    """A session: its path on the server and the last token this side knows."""

    generation: int
    path: str
    token: str


@dataclass(frozen=True)
class Seen:
    """What a read returned: the current token and, when it changed, the payload."""

    token: str
    data: str | None
    status: int


def payload(size: int, tag: str = "") -> str:
    """``size`` characters of base64: the shape of an encrypted message; ``tag`` first, to recognise it."""
    body = urlsafe_b64encode(os.urandom(size)).decode()
    return (tag + body)[:size]


def _check(reply: Reply, operation: str, *expected: int) -> Reply:
    if reply.status not in expected:
        raise UnexpectedStatus(operation, reply.status)
    return reply


async def create(conn: Connection, generation: int, data: str) -> Handle:
    if generation == 1:
        reply = _check(await conn.request("POST", GEN1_PATH, [_TEXT], data.encode()), "create", 201)
        url = json.loads(reply.body)["url"]
        return Handle(1, urlsplit(url).path, (reply.header(b"etag") or b"").decode())
    body = json.dumps({"data": data}).encode()
    reply = _check(await conn.request("POST", GEN2_UNSTABLE_PATH, [_JSON], body), "create", 200, 201)
    answer = json.loads(reply.body)
    return Handle(2, f"{GEN2_UNSTABLE_PATH}/{answer['id']}", answer["sequence_token"])


async def read(conn: Connection, handle: Handle, *, wait_ms: int = 0, push: bool = False) -> Seen:
    """Poll once (``push``: long-poll up to ``wait_ms``); ``data`` is set when the token differs from ours."""
    if handle.generation == 1:
        # A side that has read nothing yet (empty token) asks unconditionally.
        headers = [("If-None-Match", handle.token)] if handle.token else []
        if push:
            headers.append(("Prefer", f"wait={max(1, wait_ms // 1000)}"))
        reply = _check(await conn.request("GET", handle.path, headers), "read", 200, 304)
        token = (reply.header(b"etag") or b"").decode()
        if reply.status == 304 or token == handle.token:
            return Seen(token, None, reply.status)
        return Seen(token, reply.body.decode(), reply.status)
    target = handle.path
    if push:
        target = f"{handle.path}?since={handle.token}&timeout_ms={wait_ms}"
    reply = _check(await conn.request("GET", target), "read", 200)
    answer = json.loads(reply.body)
    token = answer["sequence_token"]
    return Seen(token, answer["data"] if token != handle.token else None, reply.status)


async def write(conn: Connection, handle: Handle, data: str) -> str:
    """Write ``data`` over the version ``handle.token`` names; returns (and stores) the new token."""
    if handle.generation == 1:
        headers = [_TEXT, ("If-Match", handle.token)]
        reply = _check(await conn.request("PUT", handle.path, headers, data.encode()), "write", 202)
        handle.token = (reply.header(b"etag") or b"").decode()
    else:
        body = json.dumps({"sequence_token": handle.token, "data": data}).encode()
        reply = _check(await conn.request("PUT", handle.path, [_JSON], body), "write", 200)
        handle.token = json.loads(reply.body)["sequence_token"]
    return handle.token


async def delete(conn: Connection, handle: Handle) -> None:
    _check(await conn.request("DELETE", handle.path), "delete", 200, 204)


async def push_advertised(conn: Connection, handle: Handle) -> str | None:
    """The server's ``X-Qrlink-Push`` header on a session read, if it offers push delivery."""
    headers = [("If-None-Match", handle.token)] if handle.generation == 1 else []
    reply = await conn.request("GET", handle.path, headers)
    value = reply.header(b"x-qrlink-push")
    return value.decode() if value is not None else None
