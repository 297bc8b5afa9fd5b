"""The stack as a whole: its rendezvous server, and a clean start and stop."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from devstack import DevStack
from devstack.stack import rendezvous_available
from rendezvous.protocol import HEALTH_PATH, VERSIONS_PATH

pytestmark = pytest.mark.synapse


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname or "", parts.port or 0)) == 0


@pytest.mark.skipif(not rendezvous_available(), reason="this checkout has no `python -m rendezvous serve`")
def test_rendezvous_server_is_running_at_rendezvous_url(stack: DevStack, http: httpx.Client) -> None:
    assert stack.rendezvous_url is not None

    response = http.get(f"{stack.rendezvous_url}{HEALTH_PATH.lstrip('/')}")

    assert response.status_code == 200


async def test_async_stack_starts_and_stops_everything() -> None:
    async with DevStack.start(rendezvous=False) as stack, httpx.AsyncClient(trust_env=False) as http:
        urls = [stack.homeserver_url, stack.issuer]
        data_dir = stack.data_dir
        versions = await http.get(f"{stack.homeserver_url}{VERSIONS_PATH.lstrip('/')}")
        assert stack.rendezvous_url is None

    assert versions.status_code == 200
    assert not any(_port_open(url) for url in urls)
    assert not data_dir.exists()
