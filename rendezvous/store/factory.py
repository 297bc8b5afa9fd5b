"""Choose and build the session store named by a URL (the ``store_url`` setting)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import REDIS_SCHEMES, ConfigError
from .base import SessionStore
from .memory import MemoryStore


def open_store(url: str = "memory://") -> SessionStore:
    """The store for ``url``; :class:`ConfigError` for a scheme that names none.

    ``memory://`` → :class:`MemoryStore`; ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` and
    ``rediss+cluster://`` → the Redis store.

    The Redis backend is imported only when asked for, so the memory store works without the ``redis`` extra.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/") or parts.query:
            raise ConfigError("store_url: the memory store takes no host, path or options; use memory://")
        return MemoryStore()
    if scheme in REDIS_SCHEMES:
        try:
            from .redis import RedisStore
        except ImportError as exc:
            raise ConfigError(
                f"store_url: the Redis store is not available ({exc.msg}); install the 'redis' extra"
            ) from None
        try:
            return RedisStore.from_url(url)
        except ValueError as exc:
            # Redis URL parsing errors may quote the URL, and with it a password: report only the kind.
            raise ConfigError(f"store_url: not a usable Redis URL ({type(exc).__name__})") from None
    raise ConfigError(
        f"store_url: unsupported scheme {scheme!r}; use memory:// or one of "
        + ", ".join(f"{s}://" for s in sorted(REDIS_SCHEMES))
    )
