"""Message delivery latency: from the moment a writer sends its PUT to the moment the waiting reader has it.

Pairs of one writer and one reader run at once, ping-pong style (the writer sends its next message only after
the reader has seen the previous one, then waits a random moment, as a device does while it computes). The
reader either polls once a second (what every standard client does) or, when the server advertises push
delivery (``X-Qrlink-Push``), long-polls: Gen-2 ``?since=&timeout_ms=``, Gen-1 ``If-None-Match`` with
``Prefer: wait``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bench import sessions
from bench.aio import run_async
from bench.http1 import Connection
from bench.stats import percentile

POLL_INTERVAL_S = 1.0
LONG_POLL_MS = 10_000
MESSAGE_SIZE = 512
#: The writer's pause between the reader seeing a message and the next PUT. It spans more than one poll
#: interval so that, with interval polling, a write lands at a random phase of the reader's 1 s timer rather
#: than at a fixed offset from the poll that saw the previous message.
THINK_S = (0.1, 1.1)


@dataclass(frozen=True)
class DeliveryResult:
    samples: int
    p50_ms: float
    p99_ms: float
    errors: int


def run(port: int, generation: int, *, push: bool, pairs: int, messages: int) -> DeliveryResult:
    latencies: list[float] = []
    errors = 0

    async def pair() -> None:
        nonlocal errors
        writer_conn = Connection("127.0.0.1", port, timeout=LONG_POLL_MS / 1000 + 10)
        reader_conn = Connection("127.0.0.1", port, timeout=LONG_POLL_MS / 1000 + 10)
        sent_at: dict[int, float] = {}
        seen = [asyncio.Event() for _ in range(messages)]
        try:
            handle = await sessions.create(writer_conn, generation, sessions.payload(MESSAGE_SIZE, "-1"))
            reader_handle = sessions.Handle(generation, handle.path, handle.token)

            async def reader() -> None:
                if not push:  # two devices' poll timers are unrelated; a long-poll reader waits from the start
                    await asyncio.sleep(random.uniform(0, POLL_INTERVAL_S))
                while not seen[-1].is_set():
                    tick = time.perf_counter()
                    got = await sessions.read(reader_conn, reader_handle, wait_ms=LONG_POLL_MS, push=push)
                    now = time.perf_counter()
                    if got.data is not None:
                        reader_handle.token = got.token
                        index = int(got.data[:2])
                        if 0 <= index < messages and not seen[index].is_set():
                            latencies.append(now - sent_at[index])
                            seen[index].set()
                    if not push:
                        await asyncio.sleep(max(0.0, POLL_INTERVAL_S - (time.perf_counter() - tick)))

            async def writer() -> None:
                for index in range(messages):
                    await asyncio.sleep(random.uniform(*THINK_S))
                    sent_at[index] = time.perf_counter()
                    await sessions.write(writer_conn, handle, sessions.payload(MESSAGE_SIZE, f"{index:02d}"))
                    await seen[index].wait()

            deadline = messages * (POLL_INTERVAL_S + THINK_S[1]) + 15
            await asyncio.wait_for(asyncio.gather(reader(), writer()), deadline)
            await sessions.delete(writer_conn, handle)
        except Exception:  # any failure of this pair is counted; the other pairs go on
            errors += 1
        finally:
            await writer_conn.close()
            await reader_conn.close()

    async def main() -> None:
        await asyncio.gather(*(pair() for _ in range(pairs)))

    run_async(main())
    return DeliveryResult(len(latencies), 1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99), errors)


def push_header(port: int) -> str | None:
    """The ``X-Qrlink-Push`` advertisement of the server on ``port``, or None when it has none."""

    async def main() -> str | None:
        conn = Connection("127.0.0.1", port)
        try:
            handle = await sessions.create(conn, 2, sessions.payload(64))
            value = await sessions.push_advertised(conn, handle)
            await sessions.delete(conn, handle)
            return value
        finally:
            await conn.close()

    return run_async(main())
