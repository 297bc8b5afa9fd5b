"""Fixtures every test directory shares.

``http`` is the one async httpx client of the suite. Its requests go through the test's ``recorder`` (a
:class:`~tests.support.transport.RecordingTransport`, which forwards to the real network), so a test that
wants to see or break the traffic asks for ``recorder`` beside ``http``; a test that does not is unaffected.
Proxy variables are ignored (every server a test talks to is on 127.0.0.1), and the timeout is long enough
for a push long-poll to be held by the server.

Directories that need a different client keep their own fixture of the same name, which overrides this one
there: ``tests/devstack`` (a synchronous :class:`httpx.Client`, the devstack flows are synchronous) and
``tests/server/test_push.py`` (a client bound to that module's push server through ``base_url``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.transport import RecordingTransport

#: Bound on a single request: above the longest push long-poll the server holds in the tests.
HTTP_TIMEOUT_S = 30.0


@pytest.fixture
def recorder() -> RecordingTransport:
    """Records (and can fault) every request the test's ``http`` client makes."""
    return RecordingTransport()


@pytest.fixture
async def http(recorder: RecordingTransport) -> AsyncIterator[httpx.AsyncClient]:
    """An async httpx client whose every request goes through the test's ``recorder``."""
    async with httpx.AsyncClient(transport=recorder, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        yield client
