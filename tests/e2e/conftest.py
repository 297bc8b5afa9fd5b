"""Fixtures for the end-to-end login tests: one real development stack (OAuth server, Synapse, our rendezvous
server) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import DevStack


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """The stack; the device grant's polling interval is one second so that logins finish quickly."""
    with DevStack.start(poll_interval=1, rendezvous=True) as running:
        yield running
