"""The peer's dispatcher in-process: answers for any input, hidden internals, the QR field mapping."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlink_client.cli import peer as peer_module
from qrlink_client.cli.peer import Peer
from qrlink_client.qr import decode_qr
from qrlink_client.qr.fields import qr_from_fields, qr_to_fields
from tests.client._vectors import qr_login

OPS = sorted([*peer_module.SYNC_OPS, *peer_module.ASYNC_OPS])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "channel",
    "handshake",
    "generation",
    "role",
    "secret_hex",
    "profile",
    "base_url",
    "rendezvous_id",
    "token",
    "message",
    "plaintext",
    "plaintext_hex",
    "hex",
    "peer_public_b64",
    "response_nonce_hex",
    "public_key_b64",
    "mode",
    "intent",
    "prefix",
    "rendezvous_url",
    "server_name",
    "timeout_ms",
    "qr_hex",
    "delete",
]
# Plausible values next to arbitrary JSON, so requests get past the field checks into the library calls.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.sampled_from(["ch1", "ch2", "ch3", "ch4"]),
    "generation": st.sampled_from([1, 2]),
    "role": st.sampled_from(["G", "S"]),
    "token": st.sampled_from(["T1", "T2", ""]),
    "message": st.sampled_from(["", "AAAA", "|", "AAAA|AAAA", "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw"]),
    "peer_public_b64": st.sampled_from(["B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw", "A" * 43, "AAAA"]),
    "hex": st.sampled_from(["", "00", qr_login()["qr"]["gen1_login"]["hex"]]),
    "secret_hex": st.sampled_from(["00" * 32, "00" * 31, "ff" * 32]),
    "response_nonce_hex": st.sampled_from(["00" * 32, "00" * 12]),
    "base_url": st.sampled_from(["https://example.org", "x" * 300, ""]),
    "rendezvous_id": st.sampled_from(["abc", ""]),
}
requests = st.fixed_dictionaries(
    {},
    optional={name: (PLAUSIBLE[name] | json_values) if name in PLAUSIBLE else json_values for name in FIELDS},
)


def answer(request: object) -> dict[str, Any]:
    """The response of a fresh peer to one request."""

    async def run() -> dict[str, Any]:
        peer = Peer()
        try:
            return await peer.handle(request)
        finally:
            await peer.aclose()

    return asyncio.run(run())


async def _with_channels() -> Peer:
    peer = Peer()
    where = {"base_url": "https://example.org", "rendezvous_id": "abc"}
    for request in (
        {"generation": 1, "role": "G"},
        {"generation": 1, "role": "S"},
        {"generation": 2, "role": "G", **where},
        {"generation": 2, "role": "S", **where},
    ):
        assert (await peer.handle({"op": "channel_new", **request}))["ok"]
    return peer


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from([op for op in OPS if op != "handshake_start"]), fields=requests)
def test_any_request_gets_a_named_answer(op: str, fields: dict[str, Any]) -> None:
    async def run() -> dict[str, Any]:
        peer = await _with_channels()
        try:
            return await peer.handle({**fields, "op": op})
        finally:
            await peer.aclose()

    response = asyncio.run(run())
    json.dumps(response)  # always serialisable
    if not response["ok"]:
        # A bad request is reported by a named error, never as an unexpected exception.
        assert not response["message"].startswith("unexpected"), response


def test_unexpected_exception_is_reported_by_class_without_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(peer: Peer, req: Any) -> dict[str, Any]:
        raise ValueError("internal detail 0badc0de")

    monkeypatch.setitem(peer_module.SYNC_OPS, "boom", boom)
    response = answer({"op": "boom"})
    assert response == {"ok": False, "error": "ValueError", "message": "unexpected ValueError"}


def test_library_error_text_is_passed_on() -> None:
    response = answer({"op": "qr_decode", "hex": "00"})
    assert (response["error"], response["message"]) == (
        "InvalidPrefix",
        "payload does not start with a known prefix",
    )


def test_request_without_op_is_a_missing_field_failure() -> None:
    assert answer({"channel": "ch1"})["error"] == "MissingField"


def test_op_that_is_not_a_string_is_a_bad_request() -> None:
    assert answer({"op": 7})["error"] == "BadRequest"


@pytest.mark.parametrize("op", ["handshake_status", "handshake_wait", "handshake_send", "handshake_close"])
def test_handshake_ops_on_an_unknown_handle_fail_by_name(op: str) -> None:
    assert answer({"op": op, "handshake": "hs42", "plaintext": "x"})["error"] == "UnknownHandshake"


def test_upper_case_hex_is_accepted_on_input() -> None:
    hex_in = qr_login()["qr"]["gen1_login"]["hex"].upper()
    assert answer({"op": "qr_decode", "hex": hex_in})["ok"] is True


def test_odd_length_hex_is_an_invalid_field_value() -> None:
    assert answer({"op": "qr_decode", "hex": "4d4"})["error"] == "InvalidFieldValue"


def test_padded_base64_key_is_accepted() -> None:
    fields = qr_to_fields(decode_qr(bytes.fromhex(qr_login()["qr"]["gen1_login"]["hex"])))
    fields["public_key_b64"] += "="
    assert answer({"op": "qr_encode", **fields})["hex"] == qr_login()["qr"]["gen1_login"]["hex"]


def test_gen1_qr_with_another_prefix_is_rejected() -> None:
    fields = qr_to_fields(decode_qr(bytes.fromhex(qr_login()["qr"]["gen1_login"]["hex"])))
    response = answer({"op": "qr_encode", **fields, "prefix": "IO_ELEMENT_MSC4388"})
    assert response["error"] == "InvalidFieldValue"


@pytest.mark.parametrize("name", ["gen1_reciprocate", "gen2_unstable_existing_device", "gen2_stable_new_device"])
def test_qr_fields_map_back_to_the_same_code(name: str) -> None:
    code = decode_qr(bytes.fromhex(qr_login()["qr"][name]["hex"]))
    assert qr_from_fields(qr_to_fields(code)) == code


def test_gen2_qr_encode_defaults_to_the_unstable_prefix() -> None:
    fields = qr_to_fields(decode_qr(bytes.fromhex(qr_login()["qr"]["gen2_unstable_existing_device"]["hex"])))
    del fields["prefix"]
    assert answer({"op": "qr_encode", **fields})["hex"] == qr_login()["qr"]["gen2_unstable_existing_device"]["hex"]


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("element-x", "element-x"), ("msc4388", "msc4388"), ("msc", "msc4388"), ("vodozemac", "vodozemac")],
)
def test_profile_names_and_aliases_are_accepted_and_answered_canonically(name: str, canonical: str) -> None:
    request = {"op": "channel_new", "generation": 2, "role": "G", "base_url": "https://h.example", "rendezvous_id": "a"}
    assert answer({**request, "profile": name})["ok"] is True
    fields = qr_to_fields(decode_qr(bytes.fromhex(qr_login()["qr"]["gen2_unstable_existing_device"]["hex"])))
    encoded = answer({"op": "qr_encode", **fields, "profile": name})["hex"]
    # The layout says element-x or the text's; vodozemac shares the text's layout.
    implied = "element-x" if canonical == "element-x" else "msc4388"
    assert answer({"op": "qr_decode", "hex": encoded})["profile"] == implied


def test_profile_on_a_gen1_qr_code_is_rejected() -> None:
    fields = qr_to_fields(decode_qr(bytes.fromhex(qr_login()["qr"]["gen1_login"]["hex"])))
    assert answer({"op": "qr_encode", **fields, "profile": "element-x"})["error"] == "InvalidFieldValue"
