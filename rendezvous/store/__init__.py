"""Session stores: one interface (:class:`SessionStore`), one backend per deployment shape."""

from .base import (
    TXN_RECORDS_KEPT,
    Generation,
    Session,
    SessionNotFound,
    SessionStore,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteOutcome,
    WriteResult,
    is_opaque_id,
    new_session_id,
)
from .memory import MemoryStore

__all__ = [
    "TXN_RECORDS_KEPT",
    "Generation",
    "MemoryStore",
    "Session",
    "SessionNotFound",
    "SessionStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "WriteOutcome",
    "WriteResult",
    "is_opaque_id",
    "new_session_id",
]
