"""The peer's ``handshake_*`` ops: two ``qrlink peer`` processes sign in over a real rendezvous server.

The server is the project's own ``rendezvous serve`` on a free local port (in-memory store), started once per
module; the peers reach it over real HTTP through the client transports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH
from tests.client.test_peer import PeerProcess
from tests.support.server import free_port

RENDEZVOUS = Path(sys.executable).with_name("rendezvous")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of a running rendezvous server."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0", "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0"}
    proc = subprocess.Popen(
        [
            str(RENDEZVOUS),
            "serve",
            "--port",
            str(port),
            "--public-base-url",
            base_url,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base_url + GEN2_UNSTABLE_PATH, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rendezvous server did not start: {proc.stderr.read() if proc.stderr else ''!r}")
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
def pair() -> Iterator[tuple[PeerProcess, PeerProcess]]:
    """Two peer processes: the generator's and the scanner's device."""
    generator, scanner = PeerProcess(), PeerProcess()
    yield generator, scanner
    for process in (generator, scanner):
        if process.proc.poll() is None:
            process.close()


def start_generator(peer: PeerProcess, server: str, generation: int, **extra: Any) -> dict[str, Any]:
    where = {"create_url": server + GEN1_PATH} if generation == 1 else {"base_url": server}
    return peer.ok("handshake_start", generation=generation, role="G", **where, **extra)


def established(generator: PeerProcess, scanner: PeerProcess, server: str, generation: int) -> tuple[str, str]:
    g = start_generator(generator, server, generation)
    s = scanner.ok("handshake_start", role="S", qr_hex=g["qr_hex"])
    scanner.ok("handshake_wait", handshake=s["handshake"], timeout_ms=10_000)
    generator.ok("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    return g["handshake"], s["handshake"]


@pytest.mark.parametrize("generation", [1, 2])
def test_generator_qr_names_the_new_session(
    pair: tuple[PeerProcess, PeerProcess], server: str, generation: int
) -> None:
    generator, _ = pair
    g = start_generator(generator, server, generation)
    decoded = generator.ok("qr_decode", hex=g["qr_hex"])
    assert decoded["public_key_b64"] == g["public_key_b64"]
    if generation == 1:
        assert decoded["rendezvous_url"].startswith(server + GEN1_PATH + "/")
    else:
        assert (decoded["base_url"], decoded["rendezvous_id"]) == (server, g["rendezvous_id"])


@pytest.mark.parametrize("generation", [1, 2])
def test_handshake_is_running_until_the_scanner_joins(
    pair: tuple[PeerProcess, PeerProcess], server: str, generation: int
) -> None:
    generator, _ = pair
    g = start_generator(generator, server, generation)
    assert generator.ok("handshake_status", handshake=g["handshake"])["state"] == "running"


@pytest.mark.parametrize("generation", [1, 2])
def test_two_peers_agree_on_the_check_code(pair: tuple[PeerProcess, PeerProcess], server: str, generation: int) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, generation)
    s = scanner.ok("handshake_start", role="S", qr_hex=g["qr_hex"])
    s_done = scanner.ok("handshake_wait", handshake=s["handshake"], timeout_ms=10_000)
    g_done = generator.ok("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert (g_done["state"], s_done["state"]) == ("established", "established")
    assert g_done["check_code"] == s_done["check_code"]
    assert (g_done["peer_public_b64"], s_done["peer_public_b64"]) == (
        s["public_key_b64"],
        g["public_key_b64"],
    )


@pytest.mark.parametrize("generation", [1, 2])
def test_established_peers_exchange_messages_both_ways(
    pair: tuple[PeerProcess, PeerProcess], server: str, generation: int
) -> None:
    generator, scanner = pair
    g, s = established(generator, scanner, server, generation)
    scanner.ok("handshake_send", handshake=s, plaintext='{"type":"m.login.protocols"}')
    received = generator.ok("handshake_receive", handshake=g, timeout_ms=10_000)
    assert received["plaintext"] == '{"type":"m.login.protocols"}'
    generator.ok("handshake_send", handshake=g, plaintext='{"type":"m.login.protocol_accepted"}')
    received = scanner.ok("handshake_receive", handshake=s, timeout_ms=10_000)
    assert received["plaintext"] == '{"type":"m.login.protocol_accepted"}'


def test_handshake_channel_serves_the_channel_ops(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, 2)
    s = scanner.ok("handshake_start", role="S", qr_hex=g["qr_hex"])
    s_done = scanner.ok("handshake_wait", handshake=s["handshake"], timeout_ms=10_000)
    assert scanner.ok("check_code", channel=s["channel"])["check_code"] == s_done["check_code"]


def test_wait_without_a_scanner_times_out_and_the_handshake_goes_on(
    pair: tuple[PeerProcess, PeerProcess], server: str
) -> None:
    generator, _ = pair
    g = start_generator(generator, server, 1)
    assert generator.request("handshake_wait", handshake=g["handshake"], timeout_ms=200)["error"] == "HandshakeTimeout"
    assert generator.ok("handshake_status", handshake=g["handshake"])["state"] == "running"


def test_send_before_the_handshake_finishes_fails(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, _ = pair
    g = start_generator(generator, server, 2)
    response = generator.request("handshake_send", handshake=g["handshake"], plaintext="early")
    assert response["error"] == "HandshakePending"


def test_scanner_joining_a_deleted_session_fails_by_name(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, 2)
    generator.ok("handshake_close", handshake=g["handshake"])
    response = scanner.request("handshake_start", role="S", qr_hex=g["qr_hex"])
    assert (response["ok"], response["error"]) == (False, "SessionNotFound")


def test_closed_handshake_is_forgotten(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, _ = pair
    g = start_generator(generator, server, 1)
    generator.ok("handshake_close", handshake=g["handshake"])
    assert generator.request("handshake_status", handshake=g["handshake"])["error"] == "UnknownHandshake"
    assert generator.request("check_code", channel=g["channel"])["error"] == "UnknownChannel"


def test_unreachable_server_is_a_named_failure(pair: tuple[PeerProcess, PeerProcess]) -> None:
    generator, _ = pair
    response = generator.request("handshake_start", generation=2, role="G", base_url=f"http://127.0.0.1:{free_port()}")
    assert response["ok"] is False
    assert response["error"] != "Exception" and not response["message"].startswith("unexpected")


def test_peer_with_a_running_handshake_exits_cleanly_at_end_of_input(
    pair: tuple[PeerProcess, PeerProcess], server: str
) -> None:
    generator, _ = pair
    start_generator(generator, server, 2)
    assert generator.close() == 0
    assert generator.stderr == b""


@pytest.mark.parametrize("generation", [1, 2])
def test_scanner_using_another_key_fails_the_generator_with_decryption_error(
    pair: tuple[PeerProcess, PeerProcess], server: str, generation: int
) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, generation)
    # A man in the middle's QR: the same session, another public key.
    fields = generator.ok("qr_decode", hex=g["qr_hex"])
    fields["public_key_b64"] = scanner.ok("channel_new", generation=1, role="G")["public_key_b64"]
    forged = scanner.ok("qr_encode", **fields)["hex"]
    scanner.ok("handshake_start", role="S", qr_hex=forged)
    response = generator.request("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert (response["ok"], response["error"]) == (False, "DecryptionError")


def test_send_after_a_failed_handshake_fails(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, 1)
    fields = generator.ok("qr_decode", hex=g["qr_hex"])
    fields["public_key_b64"] = scanner.ok("channel_new", generation=1, role="G")["public_key_b64"]
    scanner.ok("handshake_start", role="S", qr_hex=scanner.ok("qr_encode", **fields)["hex"])
    generator.request("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert generator.ok("handshake_status", handshake=g["handshake"])["state"] == "failed"
    response = generator.request("handshake_send", handshake=g["handshake"], plaintext="x")
    assert response["error"] == "HandshakeFailed"


def test_generator_with_a_secret_of_the_wrong_length_fails_by_name(
    pair: tuple[PeerProcess, PeerProcess], server: str
) -> None:
    generator, _ = pair
    response = generator.request("handshake_start", generation=2, role="G", base_url=server, secret_hex="00" * 31)
    assert (response["ok"], response["error"]) == (False, "InvalidKey")


# --- Gen-2 channel profiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shown", "expected"), [(None, "element-x"), ("element-x", "element-x"), ("msc4388", "msc4388"), ("msc", "msc4388")]
)
def test_the_scanner_detects_the_generators_profile_and_both_say_which(
    pair: tuple[PeerProcess, PeerProcess], server: str, shown: str | None, expected: str
) -> None:
    generator, scanner = pair
    g = start_generator(generator, server + "/", 2, **({} if shown is None else {"profile": shown}))
    assert (g["profile"], generator.ok("qr_decode", hex=g["qr_hex"])["profile"]) == (expected, expected)
    s = scanner.ok("handshake_start", role="S", qr_hex=g["qr_hex"])
    assert s["profile"] == expected
    s_done = scanner.ok("handshake_wait", handshake=s["handshake"], timeout_ms=10_000)
    g_done = generator.ok("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert (g_done["profile"], s_done["profile"]) == (expected, expected)
    assert g_done["check_code"] == s_done["check_code"]
    scanner.ok("handshake_send", handshake=s["handshake"], plaintext="over the element-x channel")
    received = generator.ok("handshake_receive", handshake=g["handshake"], timeout_ms=10_000)
    assert received["plaintext"] == "over the element-x channel"


def test_element_x_generator_shows_element_xs_layout_with_the_root_slash_trimmed(
    pair: tuple[PeerProcess, PeerProcess], server: str
) -> None:
    generator, _ = pair
    g = start_generator(generator, server + "/", 2)
    # Element X's layout: a u8 id length, then a u16 base-URL length, and no trailing "/".
    raw = bytes.fromhex(g["qr_hex"])
    id_length = raw[len(b"IO_ELEMENT_MSC4388") + 2 + 32]
    url_at = len(b"IO_ELEMENT_MSC4388") + 2 + 32 + 1 + id_length
    assert int.from_bytes(raw[url_at : url_at + 2], "big") == len(server)
    assert raw[url_at + 2 :].decode() == server == g["base_url"]


@pytest.mark.parametrize(("shown", "scanning"), [("element-x", "msc4388"), ("msc4388", "element-x")])
def test_a_scanner_on_another_profile_fails_the_generator_with_decryption_error_at_once(
    pair: tuple[PeerProcess, PeerProcess], server: str, shown: str, scanning: str
) -> None:
    generator, scanner = pair
    g = start_generator(generator, server + "/", 2, profile=shown)
    s = scanner.ok("handshake_start", role="S", qr_hex=g["qr_hex"], profile=scanning)
    assert s["profile"] == scanning
    started = time.monotonic()
    response = generator.request("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert (response["ok"], response["error"]) == (False, "DecryptionError")
    assert time.monotonic() - started < 5


def test_a_legacy_u16_code_needs_a_named_profile(pair: tuple[PeerProcess, PeerProcess], server: str) -> None:
    generator, scanner = pair
    g = start_generator(generator, server, 2)
    raw = bytes.fromhex(g["qr_hex"])
    at = len(b"IO_ELEMENT_MSC4388") + 2 + 32  # the id length: one byte in Element X's layout, two in the legacy one
    legacy = (raw[:at] + b"\x00" + raw[at:]).hex()
    assert generator.ok("qr_decode", hex=legacy)["profile"] is None

    refused = scanner.request("handshake_start", role="S", qr_hex=legacy)
    assert (refused["ok"], refused["error"]) == (False, "UnknownGen2Profile")
    s = scanner.ok("handshake_start", role="S", qr_hex=legacy, profile="element-x")
    s_done = scanner.ok("handshake_wait", handshake=s["handshake"], timeout_ms=10_000)
    g_done = generator.ok("handshake_wait", handshake=g["handshake"], timeout_ms=10_000)
    assert (s_done["profile"], s_done["check_code"]) == ("element-x", g_done["check_code"])
