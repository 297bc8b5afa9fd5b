"""Prometheus metrics: what the server counts, how the store is timed, and the ``/metrics`` exposition.

Per-request cost is kept to a clock read, one histogram observation and one counter increment: every label
combination a request can touch is bound once (:class:`RouteMetrics`, :class:`GenerationMetrics`), so the hot
path builds no label dictionaries.

Several workers (``workers > 1``) use prometheus-client's multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR``
names a directory, every worker writes its values there and any worker's ``/metrics`` answers with the sum of
all of them (see ``docs/observability.md``). ``rendezvous_sessions_live`` is read from the store at scrape time,
so it is the shared store's count whichever worker answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .protocol import METRICS_PATH
from .routes import ROUTE_NAMES
from .store import Generation, Session, SessionStore, StoreError, StoreUnavailable, WriteResult
from .store.base import RateLimit

logger = logging.getLogger("rendezvous.metrics")

#: Set by operators for multi-worker deployments; prometheus-client reads it when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

#: Request latency buckets (seconds): sub-millisecond reads up to the longest long-poll.
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Write-to-answer latency of held polls (seconds).
_WAKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
#: How a held Gen-1 poll ended (``docs/push.md``, "Held Gen-1 polls").
HOLD_OUTCOMES = ("write", "deleted", "timeout", "capped", "disconnect", "shutdown")
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

STORE_OPERATIONS = ("create", "get", "write", "delete", "count", "rate_limit", "wait_for_change", "ping")

T = TypeVar("T")


class RouteMetrics:
    """The latency histogram and per-status response counters of one route, bound once."""

    __slots__ = ("_latency", "_name", "_responses", "_statuses")

    def __init__(self, name: str, latency: Histogram, responses: Counter) -> None:
        self._name = name
        self._latency = latency.labels(name)
        self._responses = responses
        # Bound on first use: a route answers only a handful of distinct statuses.
        self._statuses: dict[int, Counter] = {}

    def observe(self, status: int, seconds: float) -> None:
        """Count one answer with ``status`` that took ``seconds``."""
        self._latency.observe(seconds)
        counter = self._statuses.get(status)
        if counter is None:
            counter = self._statuses[status] = self._responses.labels(self._name, str(status))
        counter.inc()


class GenerationMetrics:
    """The session counters of one generation, bound once."""

    __slots__ = ("conflicts", "created", "deleted", "expired", "long_polls", "replays", "watch_frames", "writes")

    def __init__(self, metrics: Metrics, generation: str) -> None:
        self.created = metrics.sessions_created.labels(generation)
        self.deleted = metrics.sessions_deleted.labels(generation)
        self.expired = metrics.sessions_expired.labels(generation)
        self.writes = metrics.writes.labels(generation)
        self.conflicts = metrics.write_conflicts.labels(generation)
        self.replays = metrics.write_replays.labels(generation)
        self.watch_frames = metrics.watch_frames.labels(generation)
        self.long_polls = {
            outcome: metrics.long_polls.labels(generation, outcome)
            for outcome in ("changed", "timeout", "gone", "overflow", "disconnected")
        }


class _LiveSessions(Collector):
    """``rendezvous_sessions_live``, from the value the scrape just read from the store."""

    def __init__(self) -> None:
        self.value: int | None = None

    def collect(self) -> Iterator[Metric]:
        if self.value is not None:
            yield GaugeMetricFamily(
                "rendezvous_sessions_live", "Live sessions in the store (all generations).", value=self.value
            )

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """Every metric of one app, registered in a registry of its own."""

    def __init__(self) -> None:
        self.multiprocess = MULTIPROC_ENV in os.environ
        # In multiprocess mode the values go to files and this registry is never exposed.
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.sessions_created = Counter(
            "rendezvous_sessions_created", "Sessions created.", ["generation"], registry=registry
        )
        self.sessions_deleted = Counter(
            "rendezvous_sessions_deleted", "Sessions deleted by a client.", ["generation"], registry=registry
        )
        self.sessions_expired = Counter(
            "rendezvous_sessions_expired",
            "Sessions created by this process that reached the end of their lifetime.",
            ["generation"],
            registry=registry,
        )
        self.writes = Counter(
            "rendezvous_writes", "Successful payload writes (PUT).", ["generation"], registry=registry
        )
        self.write_conflicts = Counter(
            "rendezvous_write_conflicts",
            "Writes refused because the ETag / sequence_token was not current (412 / 409).",
            ["generation"],
            registry=registry,
        )
        self.write_replays = Counter(
            "rendezvous_write_replays",
            "Retried writes answered from the record (repeated txnId, or the legacy retry rule).",
            ["generation"],
            registry=registry,
        )
        self.request_latency = Histogram(
            "rendezvous_http_request_duration_seconds",
            "Time from receiving a request to sending its answer, per route (long-polls apart).",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.responses = Counter(
            "rendezvous_http_responses",
            "Answers per route and status (413, 429 and 503 included).",
            ["route", "status"],
            registry=registry,
        )
        self.parked = Gauge(
            "rendezvous_push_parked",
            "Long-polls and WebSocket watches parked waiting for a change, in this process.",
            ["kind"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.long_polls = Counter(
            "rendezvous_push_long_polls",
            "Long-polls by how they ended: changed, timeout, gone, overflow (cap reached), disconnected.",
            ["generation", "outcome"],
            registry=registry,
        )
        self.watch_frames = Counter(
            "rendezvous_push_watch_frames", "Revisions sent to WebSocket watchers.", ["generation"], registry=registry
        )
        self.holds = Gauge(
            "rendezvous_holds",
            "Gen-1 polls held right now, in this process.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.holds_ended = Counter(
            "rendezvous_holds_ended",
            "Held Gen-1 polls by how they ended: write, deleted, timeout, capped (answered at once), disconnect, "
            "shutdown.",
            ["outcome"],
            registry=registry,
        )
        self.hold_wake = Histogram(
            "rendezvous_hold_wake_seconds",
            "Held Gen-1 polls ended by a write: time from the write (the store's Last-Modified) to the answer.",
            buckets=_WAKE_BUCKETS,
            registry=registry,
        )
        self.hold_outcomes = {outcome: self.holds_ended.labels(outcome) for outcome in HOLD_OUTCOMES}
        self.store_latency = Histogram(
            "rendezvous_store_operation_duration_seconds",
            "Session store call latency per operation (wait_for_change excluded: it waits on purpose).",
            ["operation"],
            buckets=_STORE_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            "rendezvous_store_errors",
            "Session store calls that failed (store unavailable or an unexpected error).",
            ["operation"],
            registry=registry,
        )
        self.routes = {name: RouteMetrics(name, self.request_latency, self.responses) for name in ROUTE_NAMES}
        self.generations = {
            Generation.GEN1: GenerationMetrics(self, "gen1"),
            Generation.GEN2: GenerationMetrics(self, "gen2"),
        }
        self.parked_long_polls = self.parked.labels("long_poll")
        self.parked_watches = self.parked.labels("websocket")
        self._live = _LiveSessions()
        if self.multiprocess:
            exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(exposed)  # type: ignore[no-untyped-call]
        else:
            exposed = registry
            ProcessCollector(registry=registry)
        exposed.register(self._live)
        self._exposed = exposed

    async def exposition(self, store: SessionStore) -> bytes:
        """The text exposition, with the live-session count read from ``store`` now."""
        try:
            self._live.value = await store.count()
        except StoreError:
            self._live.value = None  # the store error itself is counted by the instrumented store
        return generate_latest(self._exposed)

    def process_exited(self) -> None:
        """In multiprocess mode, drop this process's live gauges (its parked waiters are gone with it)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class InstrumentedStore(SessionStore):
    """A :class:`SessionStore` that times every call and counts failures, then delegates."""

    def __init__(self, inner: SessionStore, metrics: Metrics) -> None:
        self.inner = inner
        self._latency = {op: metrics.store_latency.labels(op) for op in STORE_OPERATIONS}
        self._errors = {op: metrics.store_errors.labels(op) for op in STORE_OPERATIONS}

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        except StoreUnavailable:
            self._errors[operation].inc()
            raise
        except StoreError:
            raise  # a domain answer (not found, full), not a failure
        except Exception:
            self._errors[operation].inc()
            raise
        finally:
            self._latency[operation].observe(time.perf_counter() - started)

    async def create(
        self, generation: Generation, data: bytes, *, ttl_ms: int, max_sessions: int | None = None
    ) -> Session:
        return await self._timed(
            "create", self.inner.create(generation, data, ttl_ms=ttl_ms, max_sessions=max_sessions)
        )

    async def get(self, session_id: str) -> Session | None:
        return await self._timed("get", self.inner.get(session_id))

    async def write(
        self, session_id: str, data: bytes, *, expected_version: int, txn_id: str | None = None
    ) -> WriteResult:
        return await self._timed(
            "write", self.inner.write(session_id, data, expected_version=expected_version, txn_id=txn_id)
        )

    # The combined operations go to the store as they are (the Redis store does each in one script): the
    # inherited defaults would split them into two timed calls. Each is timed as the operation it stands in for.

    async def limited_get(self, session_id: str, limit: RateLimit) -> tuple[int, Session | None]:
        return await self._timed("get", self.inner.limited_get(session_id, limit))

    async def write_generation(
        self,
        session_id: str,
        data: bytes,
        *,
        generation: Generation,
        expected_version: int,
        txn_id: str | None = None,
    ) -> WriteResult:
        call = self.inner.write_generation(
            session_id, data, generation=generation, expected_version=expected_version, txn_id=txn_id
        )
        return await self._timed("write", call)

    async def delete(self, session_id: str) -> bool:
        return await self._timed("delete", self.inner.delete(session_id))

    async def count(self) -> int:
        return await self._timed("count", self.inner.count())

    async def rate_limit(self, key: str, *, rate_per_s: float, burst: int) -> int:
        return await self._timed("rate_limit", self.inner.rate_limit(key, rate_per_s=rate_per_s, burst=burst))

    async def wait_for_change(self, session_id: str, after_version: int, timeout_s: float) -> Session | None:
        try:
            return await self.inner.wait_for_change(session_id, after_version, timeout_s)
        except StoreUnavailable:
            self._errors["wait_for_change"].inc()
            raise

    def waiter_count(self) -> int:
        return self.inner.waiter_count()

    def on_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool | None:
        return self.inner.on_change(session_id, after_version, callback)

    async def register_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool | None:
        # Not timed, like the wait it stands in for; its failures count as that wait's.
        try:
            return await self.inner.register_change(session_id, after_version, callback)
        except StoreUnavailable:
            self._errors["wait_for_change"].inc()
            raise

    def forget_change(self, session_id: str, callback: Callable[[], object]) -> None:
        self.inner.forget_change(session_id, callback)

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()


class ExpiryWatch:
    """Counts ``rendezvous_sessions_expired``: sessions this process created that outlived their lifetime.

    The store expires sessions silently, so shortly before each deadline the session is looked up once: still
    there means it is about to expire (writes never extend a lifetime); gone means a client deleted it, and
    whichever process served that DELETE counted it. One read per session, from one background task that sleeps
    until the next deadline. Sessions all share one lifetime, so deadlines arrive in creation order and a queue
    suffices. A session deleted within the last :attr:`margin_s` seconds counts as both.
    """

    def __init__(self, store: SessionStore, metrics: Metrics, *, margin_s: float = 1.0) -> None:
        self._store = store
        self._counters = {gen: m.expired for gen, m in metrics.generations.items()}
        self.margin_s = margin_s
        self._queue: collections.deque[tuple[float, str, Generation]] = collections.deque()
        #: The queued ids still to look up: a deletion here takes its id out, so its probe is skipped. Only
        #: ids in the queue are ever in here: with several workers most deletions are of sessions another
        #: worker created, and remembering those would keep every such id forever.
        self._watching: set[str] = set()
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rendezvous-expiry-watch")

    async def stop(self) -> None:
        """Stop the background task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def created(self, session: Session) -> None:
        """Track a session this process just created."""
        if self._task is None:
            return
        probe_at = time.monotonic() + session.expires_in_ms / 1000 - self.margin_s
        self._queue.append((probe_at, session.id, session.generation))
        self._watching.add(session.id)
        self._pending.set()

    def deleted(self, session_id: str) -> None:
        """A session this process deleted: no need to look it up (if this process is watching it at all)."""
        self._watching.discard(session_id)

    @property
    def held_ids(self) -> int:
        """How many session ids the watch holds: one per session this process created and has yet to look up."""
        return len(self._queue)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._pending.clear()
                await self._pending.wait()
                continue
            probe_at, session_id, generation = queue[0]
            delay = probe_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            queue.popleft()
            if session_id not in self._watching:
                continue  # deleted by this process
            self._watching.discard(session_id)
            try:
                session = await self._store.get(session_id)
            except StoreError:
                continue  # counted as a store error; the session's fate stays unknown
            if session is not None and session.generation is generation:
                self._counters[generation].inc()


# -- a separate metrics port ---------------------------------------------------------------------------------

_MAX_REQUEST_HEAD = 8192
_READ_TIMEOUT_S = 5.0


async def serve_metrics_port(metrics: Metrics, store: SessionStore, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` and answer ``GET /metrics`` there (nothing else).

    ``SO_REUSEPORT`` lets every worker bind the same port; in multiprocess mode each of them answers with the
    sum over all workers, so it does not matter which one the kernel picks.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            method = request_line[0] if request_line else b""
            target = request_line[1].split(b"?", 1)[0] if len(request_line) > 1 else b""
            if method in (b"GET", b"HEAD") and target == METRICS_PATH.encode():
                body = await metrics.exposition(store)
                status, content_type = b"200 OK", CONTENT_TYPE
            else:
                body, status, content_type = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, content_type, len(body))
            )
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_port=True, limit=_MAX_REQUEST_HEAD)
