"""SynapseServer's options reach the running Synapse, and a failed start explains itself."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rendezvous.protocol import GEN1_PATH
from tests.peers.synapse import SynapseError, SynapseServer

pytestmark = pytest.mark.synapse

DELEGATE = f"http://127.0.0.1:9{GEN1_PATH}"


def test_delegation_endpoint_makes_create_redirect_with_307(synapse_python: Path) -> None:
    with SynapseServer(msc4108_delegation_endpoint=DELEGATE) as server:
        response = httpx.post(server.gen1_create_url, headers={"Content-Type": "text/plain"}, content=b"")

    assert response.status_code == 307
    assert response.headers["location"] == DELEGATE


def test_invalid_config_fails_start_with_synapse_log(synapse_python: Path) -> None:
    server = SynapseServer(overrides={"experimental_features": {"msc4388_mode": "sideways"}})

    with pytest.raises(SynapseError, match="msc4388_mode"):
        server.start()
    assert not server.running
