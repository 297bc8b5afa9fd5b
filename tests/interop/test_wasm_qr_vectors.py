"""matrix-sdk-crypto-wasm 18.9.0 still decodes the recorded QR vectors to the recorded fields (guards the
peer itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.peers.node import NodeDriver

pytestmark = pytest.mark.node

# The repository's copy of the recorded vectors (tests/client/vectors/README.md says where they come from).
VECTORS = Path(__file__).parents[1] / "client" / "vectors" / "matrix-sdk-crypto-wasm-18.9.0-qr.json"
ENTRIES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["qr"]


def expected_fields(parsed: dict[str, Any]) -> dict[str, Any]:
    """The vector's camelCase ``parsed`` block in the driver's snake_case shape."""
    msc4108, msc4388 = parsed["msc4108"], parsed["msc4388"]
    return {
        "mode": parsed["mode"],
        "public_key": parsed["publicKey"],
        "rendezvous_url": parsed["rendezvousUrl"],
        "server_name": parsed["serverName"],
        "msc4108": msc4108 and {"rendezvous_url": msc4108["rendezvousUrl"], "server_name": msc4108["serverName"]},
        "msc4388": msc4388 and {"rendezvous_id": msc4388["rendezvousId"], "base_url": msc4388["baseUrl"]},
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_wasm_decodes_vector_to_recorded_fields(wasm: NodeDriver, entry: dict[str, Any]) -> None:
    decoded = wasm.call("qr_decode", hex=entry["hex"])

    assert {key: decoded[key] for key in expected_fields(entry["parsed"])} == expected_fields(entry["parsed"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_wasm_reencodes_vector_to_identical_bytes(wasm: NodeDriver, entry: dict[str, Any]) -> None:
    assert wasm.call("qr_decode", hex=entry["hex"])["to_bytes_hex"] == entry["hex"]
