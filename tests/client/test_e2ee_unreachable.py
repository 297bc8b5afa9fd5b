"""A homeserver that does not answer: a named error that names the request, never the access token."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from qrlink_client.e2ee import E2eeHomeserver, HomeserverError, HomeserverUnreachable

TOKEN = "syt_secret_access_token_value"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_is_homeserver_unreachable() -> None:
    async with E2eeHomeserver(f"http://127.0.0.1:{_closed_port()}", TOKEN, user_id="@a:example.org") as hs:
        with pytest.raises(HomeserverUnreachable) as raised:
            await hs.query_keys(["@a:example.org"])
    error = raised.value
    assert (error.method, error.reason) == ("POST", "ConnectError")
    assert error.path.endswith("/keys/query")
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__
    assert not isinstance(error, HomeserverError)  # no status to report


async def test_a_homeserver_that_never_answers_is_unreachable_at_the_timeout(silent_port: int) -> None:
    async with E2eeHomeserver(f"http://127.0.0.1:{silent_port}", TOKEN, timeout=0.3) as hs:
        with pytest.raises(HomeserverUnreachable) as raised:
            await hs.user_id()
    assert raised.value.reason == "ReadTimeout"
    assert str(raised.value) == "GET /_matrix/client/v3/account/whoami failed: ReadTimeout"
