"""Fixtures for the end-to-end login tests: real development stacks (OAuth server, Synapse, our rendezvous
server), one per test module that uses them.

No test here relies on the pytest timeout: each flow has its own deadline (``_limits.py``) that fails with a
message naming what it waited for. The timeout every test here gets, ``E2E_TIMEOUT``, is only a backstop above
the slowest stack start plus a login's deadline; a test that reaches it is reported as relying on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import DevStack
from tests.e2e._limits import E2E_TIMEOUT, STACK_START_TIMEOUT
from tests.support.deadlines import pytest_runtest_makereport as pytest_runtest_makereport

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT), append=False)  # before any of the test's own


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """The stack; the device grant's polling interval is one second so that logins finish quickly."""
    with DevStack.start(poll_interval=1, rendezvous=True, start_timeout=STACK_START_TIMEOUT) as running:
        yield running


@pytest.fixture(scope="module")
def front_stack() -> Iterator[DevStack]:
    """A stack whose homeserver URL is a front reverse proxy that sends the rendezvous paths to our server, so
    Gen-2 sessions live there instead of on Synapse."""
    with DevStack.start(poll_interval=1, gen2_rendezvous="qrlink", start_timeout=STACK_START_TIMEOUT) as running:
        yield running
