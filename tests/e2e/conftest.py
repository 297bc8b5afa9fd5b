"""Fixtures for the end-to-end login tests: real development stacks (OAuth server, Synapse, our rendezvous
server), one per test module that uses them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import DevStack


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """The stack; the device grant's polling interval is one second so that logins finish quickly."""
    with DevStack.start(poll_interval=1, rendezvous=True) as running:
        yield running


@pytest.fixture(scope="module")
def front_stack() -> Iterator[DevStack]:
    """A stack whose homeserver URL is a front reverse proxy that sends the rendezvous paths to our server, so
    Gen-2 sessions live there instead of on Synapse."""
    with DevStack.start(poll_interval=1, gen2_rendezvous="qrlink") as running:
        yield running
