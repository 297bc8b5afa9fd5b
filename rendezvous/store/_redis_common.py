"""What the Redis store's modules share: which redis-py errors mean "unavailable", and raw connection options."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final

from redis.exceptions import RedisClusterException, RedisError

from .base import StoreUnavailable

#: The Redis store's one logger, whichever of its modules logs: operators filter on this name.
log = logging.getLogger("rendezvous.store.redis")

#: Everything redis-py raises when the server cannot serve a request (RedisClusterException is no RedisError).
REDIS_ERRORS: Final = (RedisError, RedisClusterException, OSError)
UNAVAILABLE_MESSAGE: Final = "the Redis store is unavailable"


@contextlib.contextmanager
def unavailable_on_redis_errors() -> Iterator[None]:
    """Turn redis-py's errors inside the block into :class:`StoreUnavailable`."""
    try:
        yield
    except REDIS_ERRORS as exc:
        # A fixed message: the redis-py error is chained for operators; ids and payloads never reach the text.
        raise StoreUnavailable(UNAVAILABLE_MESSAGE) from exc


def resp2_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """redis-py connection options for a RESP2 connection without maintenance notifications (RESP3 only).

    The store's own connections (the pipelined one, the subscribers) read replies in order themselves: RESP2
    keeps out-of-band push messages from coming between them.
    """
    options = dict(kwargs)
    options["protocol"] = 2
    for key in [k for k in options if k.startswith("maint_notifications") or k.startswith("oss_cluster_maint")]:
        del options[key]
    return options
