"""The sessions a run created: each is deleted before the run returns, whatever happened in between."""

from __future__ import annotations

from dataclasses import dataclass

from .client import RequestFailed, SelfTestClient

#: DELETEs per left-over session before giving up on it.
_CLEANUP_ATTEMPTS = 3


@dataclass(slots=True)
class _Cleanup:
    """A session this run created and must delete."""

    url: str
    headers: dict[str, str]
    expect: tuple[int, ...]
    done: bool = False


class Cleanups:
    """The sessions this run created, and whether a check already deleted each."""

    def __init__(self) -> None:
        self._pending: list[_Cleanup] = []

    def created(self, url: str, headers: dict[str, str], expect: tuple[int, ...]) -> None:
        """Delete the session at ``url`` at the end (with ``headers``; ``expect`` are the success statuses)."""
        self._pending.append(_Cleanup(url, headers, expect))

    def deleted(self, url: str) -> None:
        """A check deleted this session: nothing left to clean up."""
        for cleanup in self._pending:
            if cleanup.url == url:
                cleanup.done = True

    async def delete_left_over(self, http: SelfTestClient) -> tuple[int, int]:
        """Delete every session not deleted yet: how many there were, and how many could not be deleted."""
        pending = [c for c in self._pending if not c.done]
        failures = 0
        for cleanup in pending:
            await _delete(http, cleanup)
            if not cleanup.done:
                failures += 1
        return len(pending), failures


async def _delete(http: SelfTestClient, cleanup: _Cleanup) -> None:
    for _ in range(_CLEANUP_ATTEMPTS):
        try:
            response = await http.send("DELETE", cleanup.url, headers=cleanup.headers)
        except RequestFailed:
            continue
        if response.status_code in cleanup.expect:
            cleanup.done = True
            return
        if response.status_code != 404:
            continue
        # 404: gone already, or (behind a split load balancer) asked of an instance that never knew it;
        # ask again, and after the last try take it as gone: it expires on its own either way.
        cleanup.done = True
