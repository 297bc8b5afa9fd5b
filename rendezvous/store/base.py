"""The one interface every session backend implements.

The HTTP layer translates requests into calls on a :class:`SessionStore` and holds no protocol state of its own.
The store knows nothing of ETags or sequence tokens: a session has an integer ``version`` that starts at 1 and grows
by one on every successful write, and each generation's routes render it in their own way.

Every backend (memory, Redis) passes the same contract suite in ``tests/store``.
"""

from __future__ import annotations

import abc
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

# The identifier grammar is protocol, not storage: it lives in rendezvous.protocol and is re-exported here.
from ..protocol import OPAQUE_ID_ALPHABET as OPAQUE_ID_ALPHABET
from ..protocol import OPAQUE_ID_MAX_LENGTH as OPAQUE_ID_MAX_LENGTH
from ..protocol import is_opaque_id as is_opaque_id

#: At most this many txnId records are kept per session, the oldest forgotten first: enough for any honest
#: client (a login takes a handful of writes), while a client sending fresh txnIds forever stays bounded.
TXN_RECORDS_KEPT = 32


def new_session_id() -> str:
    """A fresh session id: 192 random bits in the opaque identifier grammar (URL-safe base64, 32 characters)."""
    return secrets.token_urlsafe(24)


class Generation(enum.IntEnum):
    """Which rendezvous API created a session. The two share nothing: a session is only visible to its own."""

    GEN1 = 1  # MSC4108 (2024): text/plain bodies, ETag
    GEN2 = 2  # MSC4388: JSON bodies, sequence_token, txnId


@dataclass(frozen=True, slots=True)
class Session:
    """A snapshot of one session, as the store held it at one instant."""

    id: str
    generation: Generation
    data: bytes
    #: 1 at creation, one more after every successful write (never reused within a session).
    version: int
    #: Unix time in ms of the creation or of the last successful write.
    last_modified_ms: int
    #: Unix time in ms at which the session expires; fixed at creation, writes do not extend it.
    expires_at_ms: int
    #: Lifetime left when the snapshot was taken, by the store's own clock (clients get this, not a date).
    expires_in_ms: int

    def without_data(self) -> Session:
        """This snapshot without its payload: all a request needs that can only answer with its headers (a held
        poll keeps it meanwhile, and on Redis the payload is its own copy)."""
        return replace(self, data=b"")

    def __repr__(self) -> str:
        # Payloads are end-to-end encrypted but still never belong in logs; ids are capabilities.
        return (
            f"Session(id={self.id[:4]}…, generation={self.generation.name}, version={self.version}, "
            f"data=<{len(self.data)} bytes>, expires_in_ms={self.expires_in_ms})"
        )


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One token bucket to take from: its key, refill rate and size (see :meth:`SessionStore.rate_limit`)."""

    key: str
    rate_per_s: float
    burst: int


class WriteOutcome(enum.Enum):
    """What a compare-and-swap write did."""

    WRITTEN = "written"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The answer to :meth:`SessionStore.write`.

    ``version`` is the version the response must report: the new version after a write, or the version that was
    current when a write conflicted. On a replay (``replayed=True``) both come from the txnId record, so a retried
    request gets exactly the answer the first attempt got, even if the session moved on since.
    ``session`` is always the session as it is now.
    """

    outcome: WriteOutcome
    version: int
    session: Session
    replayed: bool = False


class StoreError(Exception):
    """Base class of the store's errors."""


class SessionNotFound(StoreError):
    """The session does not exist: never created, deleted, or expired."""


class StoreFull(StoreError):
    """Creating one more session would exceed the configured maximum of live sessions."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; the operation did not happen. Retry later."""


class SessionStore(abc.ABC):
    """Short-lived sessions, each a single mutable slot, shared by every process that serves them.

    Writes are atomic per session. An expired session is gone for every operation, exactly as if deleted.
    """

    @abc.abstractmethod
    async def create(
        self, generation: Generation, data: bytes, *, ttl_ms: int, max_sessions: int | None = None
    ) -> Session:
        """Create a session holding ``data`` at version 1 that expires ``ttl_ms`` from now.

        Raises :class:`StoreFull` if ``max_sessions`` live sessions already exist.
        """

    @abc.abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The current snapshot of a live session, or ``None``."""

    @abc.abstractmethod
    async def write(
        self, session_id: str, data: bytes, *, expected_version: int, txn_id: str | None = None
    ) -> WriteResult:
        """Replace the data if the current version is ``expected_version`` (compare-and-swap).

        With a ``txn_id`` already recorded for this session, nothing is compared or written: the recorded outcome is
        returned with ``replayed=True``. Otherwise the outcome, conflict included, is recorded against ``txn_id``
        for the rest of the session's life, or until :data:`TXN_RECORDS_KEPT` newer records of the session push it
        out (the oldest goes first). Raises :class:`SessionNotFound`.
        """

    @abc.abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Delete a session and its txnId records. ``False`` if there was no live session."""

    @abc.abstractmethod
    async def count(self) -> int:
        """The number of live sessions."""

    @abc.abstractmethod
    async def rate_limit(self, key: str, *, rate_per_s: float, burst: int) -> int:
        """Take one token from the bucket ``key`` (refilled at ``rate_per_s``, holding at most ``burst``).

        Returns 0 if the request may go ahead, otherwise how many ms until a token will be available.
        """

    @abc.abstractmethod
    async def wait_for_change(self, session_id: str, after_version: int, timeout_s: float) -> Session | None:
        """Wait until the session's version differs from ``after_version``, at most ``timeout_s`` seconds.

        Returns the new snapshot, the unchanged one at the deadline, or ``None`` if the session is gone.
        A cancelled waiter leaves nothing behind.
        """

    @abc.abstractmethod
    def waiter_count(self) -> int:
        """How many :meth:`wait_for_change` calls and registered change callbacks are parked in this process."""

    def on_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool | None:
        """Call ``callback`` once, from the event loop, when the session moves past ``after_version`` or is gone.

        The cheap form of :meth:`wait_for_change` for a caller that waits on something else meanwhile (a held
        poll waits on its connection): no future, no timer, no coroutine. Returns ``True`` once registered,
        ``False`` when the session has already moved past ``after_version`` or is gone (``callback`` is not
        called), and ``None`` when this backend cannot register a callback without awaiting (use
        :meth:`register_change`). Expiry calls nobody: the caller looks again after the session's deadline.
        :meth:`forget_change` unregisters.
        """
        return None

    async def register_change(self, session_id: str, after_version: int, callback: Callable[[], object]) -> bool | None:
        """:meth:`on_change` for every backend: registering may await here (a shared store subscribes first).

        Returns as :meth:`on_change` does; ``None`` when this backend has no change callbacks at all (use
        :meth:`wait_for_change`). Once registered, ``callback`` is called once: when the session moves past
        ``after_version`` or is gone, or when the backend may have missed that (a lost subscription), after which
        the caller reads the session again to know which. Raises :class:`StoreUnavailable`; a registration that
        raises or is cancelled leaves nothing behind. The default calls :meth:`on_change`, without suspending.
        """
        return self.on_change(session_id, after_version, callback)

    def forget_change(self, session_id: str, callback: Callable[[], object]) -> None:
        """Unregister an :meth:`on_change` / :meth:`register_change` callback; nothing happens if it has been
        called or is unknown. The callback's share of any backend resource (a subscription) is released here.
        """
        return None

    async def limited_get(self, session_id: str, limit: RateLimit) -> tuple[int, Session | None]:
        """:meth:`rate_limit` on ``limit``, then :meth:`get` if a token was taken: one call where the backend can.

        Returns ``(0, snapshot or None)``, or ``(ms until a token will be available, None)`` without reading.
        """
        retry_after_ms = await self.rate_limit(limit.key, rate_per_s=limit.rate_per_s, burst=limit.burst)
        if retry_after_ms > 0:
            return retry_after_ms, None
        return 0, await self.get(session_id)

    async def write_generation(
        self,
        session_id: str,
        data: bytes,
        *,
        generation: Generation,
        expected_version: int,
        txn_id: str | None = None,
    ) -> WriteResult:
        """:meth:`write`, to a session of ``generation`` only: one call where the backend can.

        A session of the other generation is left untouched and raises :class:`SessionNotFound`, as each
        generation's API sees only its own sessions.
        """
        current = await self.get(session_id)
        if current is None or current.generation is not generation:
            raise SessionNotFound
        return await self.write(session_id, data, expected_version=expected_version, txn_id=txn_id)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` if the backend cannot serve requests now."""
        return None

    async def close(self) -> None:
        """Release connections and background tasks."""
        return None
