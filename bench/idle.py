"""Memory per idle session: create N live sessions that nobody polls, compare the server's RSS before and after.

Each session holds one 512-character payload (an encrypted message, as a session holds mid-login); the
generations alternate. The baseline is taken after a warm-up of a few hundred sessions, so one-off allocations
(imports, first-request caches) do not count as per-session cost. With the Redis store the sessions live in
Redis, so its ``used_memory`` growth is reported beside the workers' RSS. A sample of the sessions is read
back at the end: a server that evicts sessions to stay within a cap (Synapse keeps a few hundred at most)
holds fewer than were created, and the per-session figure is then meaningless.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bench import procs, sessions
from bench.aio import run_async
from bench.http1 import Connection, HttpError
from bench.sessions import UnexpectedStatus

PAYLOAD_SIZE = 512
CONNECTIONS = 32
WARMUP = 500
#: Creating stops here even if fewer sessions exist; the result states how many were made.
DEADLINE_S = 150.0
#: Sessions read back at the end to check they are all still live.
SAMPLE = 200
#: Let the allocator and the workers settle before reading RSS.
SETTLE_S = 1.0


@dataclass(frozen=True)
class IdleResult:
    sessions: int
    rss_before_mb: float
    rss_after_mb: float
    redis_delta_mb: float | None
    errors: int
    seconds: float
    #: Share of the sampled sessions still readable at the end (1.0: none was evicted).
    alive: float

    @property
    def per_10k_mb(self) -> float:
        counted = self.sessions - WARMUP
        return (self.rss_after_mb - self.rss_before_mb) * 10_000 / counted if counted > 0 else float("nan")

    @property
    def redis_per_10k_mb(self) -> float | None:
        counted = self.sessions - WARMUP
        if self.redis_delta_mb is None or counted <= 0:
            return None
        return self.redis_delta_mb * 10_000 / counted


def _redis_used_mb(redis_url: str | None) -> float | None:
    if redis_url is None:
        return None
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("memory")["used_memory"]) / 2**20
    finally:
        client.close()


def run(port: int, count: int, *, server_pid: int, redis_url: str | None) -> IdleResult:
    errors = 0
    handles: list[sessions.Handle] = []

    async def fill(total: int, deadline: float) -> int:
        nonlocal errors
        made = 0

        async def worker() -> None:
            nonlocal made, errors
            conn = Connection("127.0.0.1", port)
            try:
                while made < total and time.monotonic() < deadline:
                    made += 1
                    try:
                        handles.append(await sessions.create(conn, 1 + made % 2, sessions.payload(PAYLOAD_SIZE)))
                    except (HttpError, UnexpectedStatus):
                        made -= 1
                        errors += 1
                        if errors > 100:
                            return
            finally:
                await conn.close()

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        return made

    started = time.monotonic()
    deadline = started + DEADLINE_S
    warmed = run_async(fill(WARMUP, deadline))
    time.sleep(SETTLE_S)
    rss_before = procs.rss_bytes(server_pid) / 2**20
    redis_before = _redis_used_mb(redis_url)
    made = warmed + run_async(fill(count - warmed, deadline))
    time.sleep(SETTLE_S)
    rss_after = procs.rss_bytes(server_pid) / 2**20
    redis_after = _redis_used_mb(redis_url)
    alive = run_async(_alive_share(port, random.sample(handles, min(SAMPLE, len(handles)))))
    redis_delta = None if redis_before is None or redis_after is None else redis_after - redis_before
    return IdleResult(made, rss_before, rss_after, redis_delta, errors, time.monotonic() - started, alive)


async def _alive_share(port: int, sample: list[sessions.Handle]) -> float:
    conn = Connection("127.0.0.1", port)
    alive = 0
    try:
        for handle in sample:
            try:
                await sessions.read(conn, handle)
                alive += 1
            except UnexpectedStatus:
                pass
    finally:
        await conn.close()
    return alive / len(sample) if sample else float("nan")
