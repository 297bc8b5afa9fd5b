"""Held Gen-1 polls at scale: N plain ``If-None-Match`` GETs held at once, their memory and CPU, then one write
per session wakes them.

The polls spread over sessions of 100 held polls each, every poll on its own connection (as N devices would
be). Each session carries a 1,024-byte payload, about the size of a login's messages, which its polls have read
already (a reader's poll is held after it got the current payload). The baseline RSS is taken after a warm-up of
200 held polls that were then dropped. Once the server's ``rendezvous_holds`` gauge shows all N held, its RSS and
its CPU over 5 idle seconds are read; then every session gets one PUT and each held poll's answer is timed from
its session's PUT being sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
from dataclasses import dataclass

from bench import procs
from bench.aio import run_async
from bench.http1 import Connection
from bench.stats import median, percentile
from rendezvous.protocol import GEN1_PATH, METRICS_PATH

PER_SESSION = 100
WARMUP = 200
PAYLOAD = b"x" * 1024
IDLE_S = 5.0
#: Opening stops here even if fewer polls are held; the result states how many were.
DEADLINE_S = 120.0
_HELD_RE = re.compile(rb"^rendezvous_holds (\S+)$", re.M)


@dataclass(frozen=True)
class HoldsResult:
    held: int
    rss_before_mb: float
    rss_after_mb: float
    idle_cpu_s: float
    open_s: float
    wake_p50_ms: float
    wake_p99_ms: float
    wake_cpu_s: float
    answered_200: int
    errors: int

    @property
    def per_10k_mb(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * 10_000 / self.held if self.held else float("nan")


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft open-files limit to ``needed`` (at most the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


class _Held:
    """One raw HTTP/1.1 GET left waiting for its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: int) -> None:
        self.reader, self.writer, self.session = reader, writer, session

    @classmethod
    async def open(cls, port: int, path: str, etag: str, session: int) -> _Held:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nIf-None-Match: {etag}\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        return cls(reader, writer, session)

    async def status(self) -> int:
        line = await self.reader.readline()
        return int(line.split()[1]) if line else 0

    def close(self) -> None:
        self.writer.close()


async def _held_now(port: int) -> int:
    conn = Connection("127.0.0.1", port)
    try:
        reply = await conn.request("GET", METRICS_PATH)
    finally:
        await conn.close()
    match = _HELD_RE.search(reply.body) if reply.status == 200 else None
    return int(float(match.group(1))) if match else -1


async def _create(conn: Connection) -> tuple[str, str]:
    reply = await conn.request("POST", GEN1_PATH, [("Content-Type", "text/plain")], PAYLOAD)
    etag = reply.header(b"etag")
    if reply.status != 201 or etag is None:
        raise RuntimeError(f"create answered {reply.status}")
    url: str = json.loads(reply.body)["url"]
    return url[url.index(GEN1_PATH) :], etag.decode()


async def _open_all(port: int, sessions: list[tuple[str, str]], count: int) -> list[_Held]:
    held: list[_Held] = []
    gate = asyncio.Semaphore(200)

    async def one(index: int) -> None:
        session = index // PER_SESSION
        path, etag = sessions[session]
        async with gate:
            held.append(await _Held.open(port, path, etag, session))

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), DEADLINE_S)
    return held


async def _wait_held(port: int, count: int, within: float, *, down: bool = False) -> int:
    """Poll the server's gauge until ``count`` polls are held (or at most ``count`` with ``down``)."""
    deadline = time.monotonic() + within
    now = await _held_now(port)
    for _ in range(int(within / 0.1)):
        if (now <= count if down else now >= count) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
        now = await _held_now(port)
    return now


def run(port: int, count: int, *, server_pid: int) -> HoldsResult:
    raise_fd_limit(count + WARMUP + 1024)
    return run_async(_run(port, count, server_pid))


async def _run(port: int, count: int, server_pid: int) -> HoldsResult:
    conn = Connection("127.0.0.1", port)
    try:
        warm_session = [await _create(conn)] * (WARMUP // PER_SESSION + 1)
        warm = await _open_all(port, warm_session, WARMUP)
        await _wait_held(port, WARMUP, 20)
        for request in warm:
            request.close()
        await _wait_held(port, 0, 10, down=True)
        await asyncio.sleep(1.0)
        rss_before = procs.rss_bytes(server_pid)
        sessions = [await _create(conn) for _ in range((count + PER_SESSION - 1) // PER_SESSION)]
        started = time.monotonic()
        held = await _open_all(port, sessions, count)
        now = await _wait_held(port, count, 60)
        open_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        rss_after = procs.rss_bytes(server_pid)
        cpu_before = procs.cpu_seconds(server_pid)
        await asyncio.sleep(IDLE_S)
        idle_cpu = procs.cpu_seconds(server_pid) - cpu_before
        by_session: dict[int, list[_Held]] = {}
        for request in held:
            by_session.setdefault(request.session, []).append(request)
        wakes: list[float] = []
        statuses: list[int] = []
        cpu_before = procs.cpu_seconds(server_pid)

        async def answer(request: _Held, sent: float) -> None:
            statuses.append(await request.status())
            wakes.append((time.monotonic() - sent) * 1000)

        waiting = []
        await conn.close()  # idle past the server's keep-alive timeout meanwhile: the PUTs start afresh
        conn = Connection("127.0.0.1", port)
        for index, (path, etag) in enumerate(sessions):
            sent = time.monotonic()
            waiting += [asyncio.ensure_future(answer(r, sent)) for r in by_session.get(index, [])]
            put = await conn.request(
                "PUT", path, [("Content-Type", "text/plain"), ("If-Match", etag)], b"wake " + b"x" * 512
            )
            if put.status != 202:
                raise RuntimeError(f"PUT answered {put.status}")
        await asyncio.wait_for(asyncio.gather(*waiting), 60)
        wake_cpu = procs.cpu_seconds(server_pid) - cpu_before
        for request in held:
            request.close()
    finally:
        await conn.close()
    return HoldsResult(
        held=now,
        rss_before_mb=rss_before / 2**20,
        rss_after_mb=rss_after / 2**20,
        idle_cpu_s=idle_cpu,
        open_s=open_s,
        wake_p50_ms=median(wakes),
        wake_p99_ms=percentile(wakes, 0.99),
        wake_cpu_s=wake_cpu,
        answered_200=statuses.count(200),
        errors=len(statuses) - statuses.count(200),
    )
