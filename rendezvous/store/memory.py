"""The embedded store: everything in this process's memory.

The default backend for a single server process. Each operation runs without yielding to the event loop between its
read and its write, which is what makes compare-and-swap atomic here. Expired sessions are removed lazily (a read
treats them as gone) and swept whenever sessions are created or counted.

Memory per idle session is kept small, since a busy server holds tens of thousands: a session is its id, one
small slotted object and its payload. The server gives every session the same lifetime, so deadlines arrive in
creation order and the sweep needs only a queue of ids; a session whose deadline comes before its
predecessor's (a shorter lifetime) goes into a heap instead.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import time
from collections.abc import Callable

from .base import (
    TXN_RECORDS_KEPT,
    Generation,
    Session,
    SessionNotFound,
    SessionStore,
    StoreFull,
    WriteOutcome,
    WriteResult,
    new_session_id,
)


class _Entry:
    # No txnId records here: most sessions never have one, and they live in MemoryStore._txns instead.
    __slots__ = ("data", "deadline", "expires_at_ms", "generation", "modified_to_expiry_ms", "version")

    def __init__(self, generation: Generation, data: bytes, deadline: float, now_ms: int, ttl_ms: int) -> None:
        self.generation = generation
        self.data = data
        self.version = 1
        self.deadline = deadline
        self.expires_at_ms = now_ms + ttl_ms
        # Last-modified as its distance to the (fixed) expiry: until the first write that is the lifetime, one
        # int object shared by every session created with it, instead of one more timestamp per session.
        self.modified_to_expiry_ms = ttl_ms

    @property
    def last_modified_ms(self) -> int:
        return self.expires_at_ms - self.modified_to_expiry_ms

    def modified(self, now_ms: int) -> None:
        self.modified_to_expiry_ms = self.expires_at_ms - now_ms


class _Bucket:
    # ``full_at``: when the bucket will be full again at its own rate and burst, so that a sweep can judge it
    # without knowing which kind of limit (create, read/write) it belongs to.
    __slots__ = ("full_at", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.full_at = updated


class MemoryStore(SessionStore):
    """In-process :class:`SessionStore`. Not shared between processes: use the Redis store for several workers."""

    #: Rate-limit buckets are swept of idle (full again) entries once there are more than this many.
    _BUCKET_SWEEP_THRESHOLD = 10_000

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._sessions: dict[str, _Entry] = {}
        #: Ids in creation order, while each deadline is no earlier than the one before (one lifetime for all).
        self._in_order: collections.deque[str] = collections.deque()
        #: (deadline, id) of the sessions that would have broken that order.
        self._deadlines: list[tuple[float, str]] = []
        #: txnId -> (outcome, version answered), per session, for the sessions that have any; oldest first, at
        #: most TXN_RECORDS_KEPT each.
        self._txns: dict[str, dict[str, tuple[WriteOutcome, int]]] = {}
        #: The lifetime of the newest session, kept so that sessions sharing it share one int object.
        self._lifetime_ms = 0
        self._buckets: dict[str, _Bucket] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._waiter_count = 0
        #: The :meth:`on_change` callbacks per session: a held poll is one entry here and nothing else.
        self._callbacks: dict[str, set[Callable[[], object]]] = {}
        self._callback_count = 0

    # -- helpers ---------------------------------------------------------------------------------------------

    def _live(self, session_id: str) -> _Entry | None:
        entry = self._sessions.get(session_id)
        if entry is not None and entry.deadline <= self._monotonic():
            self._drop(session_id)
            return None
        return entry

    def _drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._txns.pop(session_id, None)
        self._wake(session_id)

    def _wake(self, session_id: str) -> None:
        for future in self._waiters.pop(session_id, ()):
            if not future.done():
                future.set_result(None)
        callbacks = self._callbacks.pop(session_id, None)
        if callbacks:
            self._callback_count -= len(callbacks)
            for callback in callbacks:
                callback()

    def _sweep_expired(self) -> None:
        now = self._monotonic()
        sessions = self._sessions
        in_order = self._in_order
        while in_order:
            entry = sessions.get(in_order[0])
            if entry is not None and entry.deadline > now:
                break
            session_id = in_order.popleft()
            if entry is not None:
                self._drop(session_id)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, session_id = heapq.heappop(heap)
            entry = sessions.get(session_id)
            if entry is not None and entry.deadline == deadline:
                self._drop(session_id)

    def _last_deadline(self) -> float | None:
        """The deadline of the newest session still queued in creation order."""
        in_order = self._in_order
        while in_order:
            entry = self._sessions.get(in_order[-1])
            if entry is not None:
                return entry.deadline
            in_order.pop()  # deleted already: nothing to sweep
        return None

    def _snapshot(self, session_id: str, entry: _Entry) -> Session:
        return Session(
            id=session_id,
            generation=entry.generation,
            data=entry.data,
            version=entry.version,
            last_modified_ms=entry.last_modified_ms,
            expires_at_ms=entry.expires_at_ms,
            expires_in_ms=max(0, int((entry.deadline - self._monotonic()) * 1000)),
        )

    # -- SessionStore ----------------------------------------------------------------------------------------

    async def create(
        self, generation: Generation, data: bytes, *, ttl_ms: int, max_sessions: int | None = None
    ) -> Session:
        self._sweep_expired()
        if max_sessions is not None and len(self._sessions) >= max_sessions:
            raise StoreFull
        session_id = new_session_id()
        while session_id in self._sessions:  # 192 random bits: never in practice, but cheap to rule out
            session_id = new_session_id()
        if ttl_ms == self._lifetime_ms:
            ttl_ms = self._lifetime_ms  # the shared int object (see _Entry)
        else:
            self._lifetime_ms = ttl_ms
        deadline = self._monotonic() + ttl_ms / 1000
        entry = _Entry(generation, data, deadline, int(self._wall_clock() * 1000), ttl_ms)
        self._sessions[session_id] = entry
        last = self._last_deadline()
        if last is None or deadline >= last:
            self._in_order.append(session_id)
        else:
            heapq.heappush(self._deadlines, (deadline, session_id))
        return self._snapshot(session_id, entry)

    async def get(self, session_id: str) -> Session | None:
        entry = self._live(session_id)
        return None if entry is None else self._snapshot(session_id, entry)

    async def write(
        self, session_id: str, data: bytes, *, expected_version: int, txn_id: str | None = None
    ) -> WriteResult:
        entry = self._live(session_id)
        if entry is None:
            raise SessionNotFound
        txns = self._txns.get(session_id) if txn_id is not None else None
        if txns is not None and txn_id in txns:
            outcome, version = txns[txn_id]
            return WriteResult(outcome, version, self._snapshot(session_id, entry), replayed=True)
        if entry.version == expected_version:
            entry.data = data
            entry.version += 1
            entry.modified(int(self._wall_clock() * 1000))
            outcome = WriteOutcome.WRITTEN
            self._wake(session_id)
        else:
            outcome = WriteOutcome.CONFLICT
        if txn_id is not None:
            records = self._txns.setdefault(session_id, {})
            records[txn_id] = (outcome, entry.version)
            if len(records) > TXN_RECORDS_KEPT:
                del records[next(iter(records))]  # dicts keep insertion order: the oldest record comes first
        return WriteResult(outcome, entry.version, self._snapshot(session_id, entry))

    async def delete(self, session_id: str) -> bool:
        if self._live(session_id) is None:
            return False
        self._drop(session_id)
        return True

    async def count(self) -> int:
        self._sweep_expired()
        return len(self._sessions)

    async def rate_limit(self, key: str, *, rate_per_s: float, burst: int) -> int:
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._BUCKET_SWEEP_THRESHOLD:
                self._sweep_buckets(now)
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        else:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            wait_ms = 0
        else:
            wait_ms = max(1, int((1.0 - bucket.tokens) / rate_per_s * 1000) + 1)
        bucket.full_at = now + (burst - bucket.tokens) / rate_per_s
        return wait_ms

    def _sweep_buckets(self, now: float) -> None:
        # A bucket that has refilled completely holds no information: dropping it changes no answer. Each is
        # judged by its own rate and burst (``full_at``), not by those of the take that triggered the sweep.
        full = [k for k, b in self._buckets.items() if b.full_at <= now]
        for key in full:
            del self._buckets[key]

    async def wait_for_change(self, session_id: str, after_version: int, timeout_s: float) -> Session | None:
        entry = self._live(session_id)
        if entry is None:
            return None
        if entry.version != after_version or timeout_s <= 0:
            return self._snapshot(session_id, entry)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(session_id, set())
        waiters.add(future)
        self._waiter_count += 1
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            pass
        finally:
            self._waiter_count -= 1
            remaining = self._waiters.get(session_id)
            if remaining is not None:
                remaining.discard(future)
                if not remaining:
                    del self._waiters[session_id]
        return await self.get(session_id)

    def waiter_count(self) -> int:
        return self._waiter_count + self._callback_count

    def on_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool | None:
        entry = self._live(session_id)
        if entry is None or entry.version != after_version:
            return False
        callbacks = self._callbacks.get(session_id)
        if callbacks is None:
            callbacks = self._callbacks[session_id] = set()
        if callback not in callbacks:
            callbacks.add(callback)
            self._callback_count += 1
        return True

    def forget_change(self, session_id: str, callback: Callable[[], object]) -> None:
        callbacks = self._callbacks.get(session_id)
        if callbacks is not None and callback in callbacks:
            callbacks.remove(callback)
            self._callback_count -= 1
            if not callbacks:
                del self._callbacks[session_id]
