"""Session stores: one interface (:class:`SessionStore`), one backend per deployment shape."""

from .base import (
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
