"""Fixtures: one rendezvous server started through its CLI, shared by the tests that need only the defaults.

Rate limits are off there so that tests do not throttle each other; the limits have their own servers.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import serve_cli


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    env = {
        "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
        "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
        "RENDEZVOUS_GEN2_STABLE_API": "true",
        # Held polls end quickly here: a plain conditional GET of an unchanged session is 304 after 0.3 s.
        "RENDEZVOUS_HOLD_MS": "300",
    }
    with serve_cli(env) as base_url:
        yield base_url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as c:
        yield c
