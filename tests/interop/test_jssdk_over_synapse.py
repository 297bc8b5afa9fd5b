"""Two matrix-js-sdk devices (Element Web's MSC4108 code) complete the secure channel through Synapse's Gen-1
rendezvous: proves the Node and Synapse peers work together before they are used against ours."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.peers.node import NodeDriver, NodeDriverFactory
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.node, pytest.mark.synapse]


@dataclass
class Pair:
    generator: NodeDriver
    scanner: NodeDriver
    url: str
    generator_code: str
    scanner_code: str


@pytest.fixture
def pair(node_driver: NodeDriverFactory, synapse: SynapseServer) -> Iterator[Pair]:
    """G creates the session on Synapse and shows a QR; S scans it; both finish the ECIES handshake."""
    generator, scanner = node_driver("jssdk"), node_driver("jssdk")
    url = generator.call("create", fallback_rz_server=synapse.gen1_create_url)["url"]
    qr = generator.call("generate_code", mode="Login")["hex"]
    generator_connected = generator.submit("connect")  # G polls until S's LoginInitiateMessage arrives
    scanner.call("scan", qr_hex=qr)
    scanner_code = scanner.call("connect")["check_code"]
    generator_code = generator.wait(generator_connected)["check_code"]
    yield Pair(generator, scanner, url, generator_code, scanner_code)


def test_handshake_gives_both_devices_the_same_check_code(pair: Pair) -> None:
    assert pair.scanner_code is not None
    assert len(pair.scanner_code) == 2 and pair.scanner_code.isdigit()
    assert pair.generator_code == pair.scanner_code


def test_session_lives_on_synapse(pair: Pair, synapse: SynapseServer) -> None:
    assert pair.url.startswith(f"{synapse.base_url}_synapse/client/rendezvous/")


def test_payload_travels_from_scanner_to_generator(pair: Pair) -> None:
    payload: dict[str, Any] = {"type": "m.login.protocols", "protocols": ["device_authorization_grant"]}

    received = pair.generator.submit("secure_receive")
    pair.scanner.call("secure_send", payload=payload)

    assert pair.generator.wait(received)["payload"] == payload


def test_payload_travels_from_generator_to_scanner(pair: Pair) -> None:
    payload: dict[str, Any] = {"type": "m.login.protocol", "protocol": "device_authorization_grant"}

    received = pair.scanner.submit("secure_receive")
    pair.generator.call("secure_send", payload=payload)

    assert pair.scanner.wait(received)["payload"] == payload


def test_cancel_deletes_the_session_on_synapse(pair: Pair) -> None:
    pair.generator.call("cancel", reason="user_cancelled")

    deletes = [e for e in pair.generator.call("trace")["trace"] if e["method"] == "DELETE"]
    assert [(e["url"], e["status"]) for e in deletes] == [(pair.url, 204)]
    assert httpx.get(pair.url).status_code == 404


def test_trace_records_generator_post_and_polls(pair: Pair, synapse: SynapseServer) -> None:
    trace = pair.generator.call("trace")["trace"]

    assert (trace[0]["method"], trace[0]["url"], trace[0]["status"]) == ("POST", synapse.gen1_create_url, 201)
    assert {(e["method"], e["status"]) for e in trace[1:]} <= {("GET", 200), ("GET", 304), ("PUT", 202)}
