"""A small keep-alive HTTP/1.1 client for load generation.

httpx spends more CPU per request than the servers under test do, so on a 2-core machine it would measure
itself. This client writes the request bytes itself and parses only what the benchmarks need (status, headers,
``Content-Length`` or chunked bodies), one connection per simulated device, as each Element client has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass


class HttpError(Exception):
    """The connection failed or the server's answer could not be parsed."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response: status, headers (lower-cased names) and body."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


class Connection:
    """One persistent HTTP/1.1 connection to ``host:port``, reopened when the server closes it."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (otherwise the first request does), so its cost can be timed apart."""
        try:
            await self._open()
        except (OSError, TimeoutError) as exc:
            raise HttpError(f"connect failed: {type(exc).__name__}") from exc

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        self._reader, self._writer = reader, writer
        return reader, writer

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Reply:
        """Send one request and read its whole response; any failure closes the connection."""
        try:
            return await asyncio.wait_for(self._exchange(method, target, headers, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{method} failed: {type(exc).__name__}") from exc

    async def _exchange(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes) -> Reply:
        reader, writer = await self._open()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        parsed: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            parsed[name.strip().lower()] = value.strip()
        payload = b""
        if method != "HEAD" and status not in (204, 304) and status >= 200:
            if parsed.get(b"transfer-encoding", b"").lower() == b"chunked":
                payload = await _read_chunked(reader)
            else:
                payload = await reader.readexactly(int(parsed.get(b"content-length", b"0")))
        if parsed.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Reply(status, parsed, payload)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
