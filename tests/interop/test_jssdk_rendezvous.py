"""Two matrix-js-sdk devices (Element Web's MSC4108 code) complete the secure channel through a Gen-1 rendezvous:
our server, and Synapse's own as the reference that proves the harness itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from rendezvous.protocol import GEN1_PATH
from tests.peers.node import NodeDriver, NodeDriverFactory
from tests.peers.synapse import SynapseServer
from tests.support.server import serve_cli

pytestmark = [pytest.mark.node]


@dataclass
class Gen1Server:
    name: str
    create_url: str
    #: Every session URL the server hands out starts with this.
    session_prefix: str


@pytest.fixture(scope="module")
def qrlink_server() -> Iterator[Gen1Server]:
    with serve_cli() as base_url:
        yield Gen1Server("qrlink", base_url + GEN1_PATH, base_url + GEN1_PATH + "/")


@pytest.fixture(params=["qrlink", pytest.param("synapse", marks=pytest.mark.synapse)])
def server(request: pytest.FixtureRequest) -> Gen1Server:
    if request.param == "qrlink":
        server: Gen1Server = request.getfixturevalue("qrlink_server")
        return server
    synapse: SynapseServer = request.getfixturevalue("synapse")
    return Gen1Server("synapse", synapse.gen1_create_url, f"{synapse.base_url}_synapse/client/rendezvous/")


@dataclass
class Pair:
    generator: NodeDriver
    scanner: NodeDriver
    url: str
    generator_code: str
    scanner_code: str


@pytest.fixture
def pair(node_driver: NodeDriverFactory, server: Gen1Server) -> Iterator[Pair]:
    """G creates the session and shows a QR; S scans it; both finish the ECIES handshake."""
    generator, scanner = node_driver("jssdk"), node_driver("jssdk")
    url = generator.call("create", fallback_rz_server=server.create_url)["url"]
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


def test_session_lives_on_the_server_under_test(pair: Pair, server: Gen1Server) -> None:
    assert pair.url.startswith(server.session_prefix)


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


def test_two_sends_in_a_row_from_one_side_are_both_delivered(pair: Pair) -> None:
    # The second PUT carries the ETag the first PUT returned (If-Match), not one learnt from a GET.
    payload: dict[str, Any] = {"type": "m.login.success"}
    for _ in range(2):
        received = pair.generator.submit("secure_receive")
        pair.scanner.call("secure_send", payload=payload)
        assert pair.generator.wait(received)["payload"] == payload


def test_cancel_deletes_the_session(pair: Pair) -> None:
    pair.generator.call("cancel", reason="user_cancelled")

    deletes = [e for e in pair.generator.call("trace")["trace"] if e["method"] == "DELETE"]
    assert [(e["url"], e["status"]) for e in deletes] == [(pair.url, 204)]
    assert httpx.get(pair.url).status_code == 404


def test_trace_records_generator_post_and_polls(pair: Pair, server: Gen1Server) -> None:
    trace = pair.generator.call("trace")["trace"]

    assert (trace[0]["method"], trace[0]["url"], trace[0]["status"]) == ("POST", server.create_url, 201)
    assert {(e["method"], e["status"]) for e in trace[1:]} <= {("GET", 200), ("GET", 304), ("PUT", 202)}
