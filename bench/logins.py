"""Realistic QR logins: create, a ping-pong of 8 encrypted-size payloads, delete; both sides poll at 1 Hz.

Each login has two clients with a connection each, as two devices would: the one that creates the session
(the device showing the QR code) and the one that scanned it. Both poll once a second, as Element's clients
do, from the moment they are in the session until it ends. Message *i* is written by side *i* mod 2 as soon as
that side has read message *i - 1*; after the eighth message the creator deletes the session and the other
side stops at the 404 that follows. The scanning device joins 1-3 s after the session was created (the time a
person takes to point a camera at the code); until then the creator polls alone. Logins start evenly spread
over 3 s, so nearly all of them are in flight at once.

Request latencies exclude opening the TCP connection, which each device does once; connection set-up is
reported on its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from bench import procs, sessions
from bench.aio import run_async
from bench.http1 import Connection, HttpError
from bench.sessions import Handle, UnexpectedStatus
from bench.stats import percentile

T = TypeVar("T")

POLL_INTERVAL_S = 1.0
#: Base64 characters of the 8 messages: the m.login.* messages of a QR login after encryption (ECIES for Gen-1,
#: HPKE for Gen-2) and base64, a few hundred bytes each; the sixth carries the secrets (cross-signing and backup
#: keys) and is the largest.
MESSAGE_SIZES = (216, 448, 172, 1056, 172, 1952, 172, 128)
RAMP_S = 3.0
SCAN_DELAY_S = (1.0, 3.0)
#: One login must finish within this; a login still running then counts as an error.
LOGIN_DEADLINE_S = 40.0
LAG_PROBE_S = 0.01


@dataclass
class _Totals:
    latencies: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    errors: int = 0
    completed: int = 0
    durations: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


@dataclass(frozen=True)
class LoginsResult:
    """One run of ``logins`` simultaneous logins."""

    logins: int
    completed: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float
    login_p50_s: float
    connect_p99_ms: float
    error_kinds: dict[str, int]
    #: How late the load generator's own event loop ran (p99): latency it adds to every figure above.
    client_lag_p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu_seconds / self.requests if self.requests else float("nan")


class _Side:
    """One device of one login: its connection, the session handle and its 1 Hz poll loop."""

    def __init__(self, port: int, totals: _Totals) -> None:
        self.conn = Connection("127.0.0.1", port, timeout=10.0)
        self.totals = totals

    async def timed(self, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.totals.latencies.append(time.perf_counter() - started)

    async def connect(self) -> None:
        started = time.perf_counter()
        await self.conn.connect()
        self.totals.connects.append(time.perf_counter() - started)


async def _one_login(port: int, generation: int, delay: float, totals: _Totals) -> None:
    await asyncio.sleep(delay)
    started = time.perf_counter()
    creator, scanner = _Side(port, totals), _Side(port, totals)
    try:
        await creator.connect()
        first = sessions.payload(MESSAGE_SIZES[0], "00")
        handle = await creator.timed(sessions.create(creator.conn, generation, first))

        async def scanner_joins() -> None:
            await asyncio.sleep(random.uniform(*SCAN_DELAY_S))
            await scanner.connect()
            # The scanner has read nothing yet: its first poll returns message 0.
            await _play(scanner, Handle(generation, handle.path, ""), 1)

        await asyncio.wait_for(asyncio.gather(_play(creator, handle, 0), scanner_joins()), LOGIN_DEADLINE_S)
        totals.completed += 1
        totals.durations.append(time.perf_counter() - started)
    except TimeoutError:
        totals.failed("login deadline")
    except UnexpectedStatus as exc:
        totals.failed(f"HTTP {exc.status}")
    except HttpError:
        totals.failed("connection")
    finally:
        await creator.conn.close()
        await scanner.conn.close()


async def _play(side: _Side, handle: Handle, role: int) -> None:
    """Poll at 1 Hz; answer each message addressed to this side; role 0 deletes after the last message."""
    last = len(MESSAGE_SIZES) - 1
    expected = 1 if role == 0 else 0  # the next message index this side waits for
    # A random phase, as two devices' timers are unrelated.
    await asyncio.sleep(random.uniform(0, POLL_INTERVAL_S))
    while True:
        tick = time.perf_counter()
        try:
            seen = await side.timed(sessions.read(side.conn, handle))
        except UnexpectedStatus as exc:
            if exc.status == 404 and role == 1 and expected > last:
                return  # the creator deleted the finished session
            raise
        if seen.data is not None:
            handle.token = seen.token
            if int(seen.data[:2]) == expected:
                if expected == last:
                    await side.timed(sessions.delete(side.conn, handle))
                    return
                reply = expected + 1
                message = sessions.payload(MESSAGE_SIZES[reply], f"{reply:02d}")
                await side.timed(sessions.write(side.conn, handle, message))
                # Past the last message, the scanner polls on until the creator's delete shows as 404.
                expected = reply + 1
        await asyncio.sleep(max(0.0, POLL_INTERVAL_S - (time.perf_counter() - tick)))


def run(port: int, logins: int, *, server_pid: int, generations: tuple[int, ...] = (1, 2)) -> LoginsResult:
    """Run ``logins`` simultaneous logins, alternating the generations, and measure every request."""
    totals = _Totals()
    lags: list[float] = []

    async def lag_probe(stop: asyncio.Event) -> None:
        # A timer that should fire every 10 ms; how late it fires is the client's own queueing delay.
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            lags.append(time.perf_counter() - before - LAG_PROBE_S)

    async def main() -> float:
        started = time.perf_counter()
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(stop))
        await asyncio.gather(
            *(_one_login(port, generations[i % len(generations)], RAMP_S * i / logins, totals) for i in range(logins))
        )
        stop.set()
        await probe
        return time.perf_counter() - started

    cpu_before = procs.cpu_seconds(server_pid)
    elapsed = run_async(main())
    cpu = procs.cpu_seconds(server_pid) - cpu_before
    return LoginsResult(
        logins=logins,
        completed=totals.completed,
        requests=len(totals.latencies),
        seconds=elapsed,
        p50_ms=1000 * percentile(totals.latencies, 0.5),
        p99_ms=1000 * percentile(totals.latencies, 0.99),
        errors=totals.errors,
        cpu_seconds=cpu,
        login_p50_s=percentile(totals.durations, 0.5),
        connect_p99_ms=1000 * percentile(totals.connects, 0.99),
        error_kinds=dict(totals.error_kinds),
        client_lag_p99_ms=1000 * percentile(lags, 0.99),
    )
