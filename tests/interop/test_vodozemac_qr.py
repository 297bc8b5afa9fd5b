"""Our QR codec against matrix-sdk-crypto-wasm 18.9.0's ``QrCodeData`` (rust-sdk's codec, in Element Web).

Gen-1: bytes travel both ways and decode to the same fields. Gen-2: wasm 18.9.0 writes the older u16-length
layout, which our decoder must read; our encoder writes the newest u8 layout, which wasm 18.9.0 cannot read
(documented by a test below, so a wasm upgrade that learns it shows up here).
"""

from __future__ import annotations

import base64
import os

import pytest

from qrlink_client.qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode, QrPrefix, decode_qr
from tests.peers.node import NodeDriver, NodeDriverError

pytestmark = pytest.mark.node

RENDEZVOUS_URL = "https://synapse.example.org/_synapse/client/rendezvous/01HX9K00Q1H6KPD47EG4G1T3XG"
# The Gen-1 server-name field is free text: js-sdk writes a server name, rust-sdk the homeserver URL.
SERVER_NAMES = ["example.org", "https://synapse-oidc.lab.element.dev/"]
# Base URLs already in WHATWG-serialised form, which is what wasm writes (it drops a lone "/" path).
BASE_URLS = ["https://matrix-client.matrix.org", "http://127.0.0.1:8008/_matrix/client/"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def test_wasm_gen1_login_bytes_decode_to_same_fields(wasm: NodeDriver, key: bytes) -> None:
    data = bytes.fromhex(wasm.call("qr_encode_gen1", public_key=b64(key), rendezvous_url=RENDEZVOUS_URL)["hex"])

    assert decode_qr(data) == Gen1QrCode(key, Gen1Mode.LOGIN, RENDEZVOUS_URL, None)


@pytest.mark.parametrize("server_name", SERVER_NAMES)
def test_wasm_gen1_reciprocate_bytes_decode_to_same_fields(wasm: NodeDriver, key: bytes, server_name: str) -> None:
    reply = wasm.call("qr_encode_gen1", public_key=b64(key), rendezvous_url=RENDEZVOUS_URL, server_name=server_name)

    assert decode_qr(bytes.fromhex(reply["hex"])) == Gen1QrCode(key, Gen1Mode.RECIPROCATE, RENDEZVOUS_URL, server_name)


def test_our_gen1_login_bytes_decode_in_wasm(wasm: NodeDriver, key: bytes) -> None:
    ours = Gen1QrCode(key, Gen1Mode.LOGIN, RENDEZVOUS_URL).to_bytes()

    decoded = wasm.call("qr_decode", hex=ours.hex())

    assert (decoded["mode"], decoded["public_key"]) == ("Login", b64(key))
    assert (decoded["rendezvous_url"], decoded["server_name"]) == (RENDEZVOUS_URL, None)


@pytest.mark.parametrize("server_name", SERVER_NAMES)
def test_our_gen1_reciprocate_bytes_decode_in_wasm(wasm: NodeDriver, key: bytes, server_name: str) -> None:
    ours = Gen1QrCode(key, Gen1Mode.RECIPROCATE, RENDEZVOUS_URL, server_name).to_bytes()

    decoded = wasm.call("qr_decode", hex=ours.hex())

    assert (decoded["mode"], decoded["public_key"]) == ("Reciprocate", b64(key))
    assert (decoded["rendezvous_url"], decoded["server_name"]) == (RENDEZVOUS_URL, server_name)


@pytest.mark.parametrize("server_name", [None, *SERVER_NAMES])
def test_our_gen1_bytes_equal_wasm_bytes(wasm: NodeDriver, key: bytes, server_name: str | None) -> None:
    mode = Gen1Mode.LOGIN if server_name is None else Gen1Mode.RECIPROCATE
    reply = wasm.call("qr_encode_gen1", public_key=b64(key), rendezvous_url=RENDEZVOUS_URL, server_name=server_name)

    assert Gen1QrCode(key, mode, RENDEZVOUS_URL, server_name).to_bytes().hex() == reply["hex"]


@pytest.mark.parametrize("base_url", BASE_URLS)
@pytest.mark.parametrize("intent", [Gen2Intent.LOGIN, Gen2Intent.RECIPROCATE], ids=["Login", "Reciprocate"])
def test_wasm_gen2_u16_bytes_decode_to_same_fields(
    wasm: NodeDriver, key: bytes, base_url: str, intent: Gen2Intent
) -> None:
    reply = wasm.call(
        "qr_encode_msc4388",
        public_key=b64(key),
        rendezvous_id="01JQ4R7ZKX2M8W5V3T6Y9B1C0D",
        base_url=base_url,
        intent=intent.name.title(),
    )

    assert decode_qr(bytes.fromhex(reply["hex"])) == Gen2QrCode(
        key, intent, "01JQ4R7ZKX2M8W5V3T6Y9B1C0D", base_url, QrPrefix.IO_ELEMENT_MSC4388
    )


def test_wasm_gen2_keeps_base_url_bytes_exactly_as_carried(wasm: NodeDriver, key: bytes) -> None:
    # wasm serialises "https://matrix.org/" as "https://matrix.org"; the AAD must bind the carried bytes.
    reply = wasm.call(
        "qr_encode_msc4388",
        public_key=b64(key),
        rendezvous_id="abc",
        base_url="https://matrix.org/",
        intent="Login",
    )

    decoded = decode_qr(bytes.fromhex(reply["hex"]))

    assert isinstance(decoded, Gen2QrCode)
    assert decoded.base_url == "https://matrix.org"


def test_wasm_18_9_cannot_read_our_newest_u8_gen2_layout(wasm: NodeDriver, key: bytes) -> None:
    ours = Gen2QrCode(key, Gen2Intent.RECIPROCATE, "01JQ4R7ZKX2M8W5V3T6Y9B1C0D", BASE_URLS[0]).to_bytes()

    with pytest.raises(NodeDriverError):
        wasm.call("qr_decode", hex=ours.hex())
