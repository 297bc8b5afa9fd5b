"""Fixtures for the development stack's tests: one real stack (OAuth server + Synapse) for the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack import DevStack
from tests.devstack.flow import OAuthClient


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    """A running stack; devices poll every second so flows stay quick."""
    with DevStack.start(poll_interval=1) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """Overrides the suite's async ``http``: the stack's tests and their OAuth flows (``flow.py``) are
    synchronous."""
    with httpx.Client(timeout=15.0, trust_env=False) as client:
        yield client


@pytest.fixture
def oauth(stack: DevStack, http: httpx.Client) -> OAuthClient:
    """A device-side OAuth client that discovered the server through Synapse's auth_metadata."""
    return OAuthClient.discover(http, stack.homeserver_url)


@pytest.fixture
def user(stack: DevStack) -> tuple[str, str]:
    """A fresh dev user: (localpart, password)."""
    localpart = f"user-{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    stack.create_user(localpart, password)
    return localpart, password


@pytest.fixture
def device_id() -> str:
    """A device ID in Element X's style, with the characters that need percent-encoding in paths."""
    return f"QR/{uuid.uuid4().hex[:8]}+x"
