"""``qrlink peer`` driven as a real subprocess: vectors, two-peer handshakes and error handling.

Every test talks to the installed console script (``.venv/bin/qrlink peer``) over pipes, exactly as another
implementation's test suite would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client._vectors import element_x, qr_login

QRLINK = Path(sys.executable).with_name("qrlink")
BASE_URL = "https://matrix-client.matrix.org"
RENDEZVOUS_ID = "e8da6355-550b-4a32-a193-1619d9830668"


class PeerProcess:
    """A running ``qrlink peer``: send one request, read its one response line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(QRLINK), "peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.transcript: list[bytes] = []
        self.stderr = b""

    def send_line(self, line: bytes) -> dict[str, Any]:
        """Write one raw line and return the parsed response line."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer.endswith(b"\n"), f"peer ended without answering (stderr: {self.stderr_so_far()!r})"
        self.transcript.append(answer)
        parsed: dict[str, Any] = json.loads(answer)
        return parsed

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``{"op": op, **fields}`` and return the response, whatever its ``ok``."""
        return self.send_line(json.dumps({"op": op, **fields}).encode())

    def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request that must succeed; return its response."""
        response = self.request(op, **fields)
        assert response["ok"] is True, response
        return response

    def stderr_so_far(self) -> bytes:
        """What the process wrote on stderr, if it has exited (reading a live pipe could block)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return b""
        return self.proc.stderr.read()

    def close(self) -> int:
        """Close stdin (EOF), wait for the exit and return its status; stderr is kept in :attr:`stderr`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        status = self.proc.wait(timeout=15)
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return status


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerProcess]:
    """One peer process shared by a module's tests (each test opens its own channels)."""
    process = PeerProcess()
    yield process
    process.close()


@pytest.fixture
def fresh_peer() -> Iterator[PeerProcess]:
    """A peer process of the test's own, for tests about the process's lifetime or output."""
    process = PeerProcess()
    yield process
    if process.proc.poll() is None:
        process.close()


def gen1() -> dict[str, Any]:
    vectors: dict[str, Any] = qr_login()["gen1_ecies"]
    return vectors


def gen2() -> dict[str, Any]:
    vectors: dict[str, Any] = qr_login()["gen2_hpke"]
    return vectors


# --- QR codec -----------------------------------------------------------------------------------------------

VALID_QR = [
    "gen1_login",
    "gen1_reciprocate",
    "gen2_stable_new_device",
    "gen2_stable_existing_device",
    "gen2_unstable_existing_device",
    "gen2_unstable_u16_legacy",
]


def expected_qr_fields(name: str) -> dict[str, Any]:
    qr = qr_login()["qr"]
    vector = qr[name]
    if name.startswith("gen1"):
        return {
            "generation": 1,
            "prefix": "MATRIX",
            "public_key_b64": qr["public_key_b64"],
            "mode": vector["mode"],
            "rendezvous_url": vector["rendezvous_url_text"],
            "server_name": vector.get("server_name_text"),
        }
    return {
        "generation": 2,
        "prefix": "MATRIX" if "stable" in name and "unstable" not in name else "IO_ELEMENT_MSC4388",
        "public_key_b64": qr["public_key_b64"],
        "intent": vector["intent"],
        "rendezvous_id": vector["rendezvous_id_text"],
        "base_url": vector["base_url_text"],
        # Every layout in this file is the text's (u8/u8) except the legacy one, which implies no profile.
        "profile": None if name == "gen2_unstable_u16_legacy" else "msc4388",
    }


@pytest.mark.parametrize("name", VALID_QR)
def test_qr_decode_reports_every_field_of_the_vector(peer: PeerProcess, name: str) -> None:
    response = peer.ok("qr_decode", hex=qr_login()["qr"][name]["hex"])
    assert {k: v for k, v in response.items() if k != "ok"} == expected_qr_fields(name)


@pytest.mark.parametrize("name", [n for n in VALID_QR if n != "gen2_unstable_u16_legacy"])
def test_qr_encode_reproduces_the_vector_bytes(peer: PeerProcess, name: str) -> None:
    response = peer.ok("qr_encode", **expected_qr_fields(name))
    assert response["hex"] == qr_login()["qr"][name]["hex"]


def test_qr_encode_writes_the_legacy_u16_code_in_the_newest_layout(peer: PeerProcess) -> None:
    legacy = expected_qr_fields("gen2_unstable_u16_legacy")
    newest = qr_login()["qr"]["gen2_unstable_existing_device"]["hex"]
    # The legacy vector differs from the newest unstable one only in its layout and its intent byte.
    expected = newest[: len("IO_ELEMENT_MSC4388") * 2 + 2] + "00" + newest[len("IO_ELEMENT_MSC4388") * 2 + 4 :]
    assert peer.ok("qr_encode", **legacy)["hex"] == expected


def test_qr_decode_output_fed_back_to_qr_encode_gives_the_same_bytes(peer: PeerProcess) -> None:
    hex_in = qr_login()["qr"]["gen1_reciprocate"]["hex"]
    fields = peer.ok("qr_decode", hex=hex_in)
    assert peer.ok("qr_encode", **fields)["hex"] == hex_in


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("empty", "NotEnoughData"),
        ("bad_prefix", "InvalidPrefix"),
        ("truncated_key", "NotEnoughData"),
        ("truncated_url", "NotEnoughData"),
        ("gen1_bad_mode", "InvalidIntent"),
        ("gen2_bad_intent", "InvalidIntent"),
        ("url_not_utf8", "NotUtf8"),
    ],
)
def test_qr_decode_names_the_error_of_each_invalid_vector(peer: PeerProcess, name: str, error: str) -> None:
    response = peer.request("qr_decode", hex=qr_login()["qr"]["invalid"][name])
    assert response["ok"] is False
    assert response["error"] == error


def test_qr_encode_rejects_a_base_url_over_255_bytes(peer: PeerProcess) -> None:
    fields = expected_qr_fields("gen2_stable_new_device") | {"base_url": "https://a.example/" + "x" * 250}
    assert peer.request("qr_encode", **fields)["error"] == "FieldTooLong"


# --- Gen-1 ECIES vectors ------------------------------------------------------------------------------------


def gen1_pair(peer: PeerProcess) -> tuple[str, str]:
    v = gen1()
    g = peer.ok("channel_new", generation=1, role="G", secret_hex=v["G_secret"])
    s = peer.ok("channel_new", generation=1, role="S", secret_hex=v["S_secret"])
    return g["channel"], s["channel"]


def test_gen1_fixed_secrets_give_the_vector_public_keys(peer: PeerProcess) -> None:
    v = gen1()
    g = peer.ok("channel_new", generation=1, role="G", secret_hex=v["G_secret"])
    s = peer.ok("channel_new", generation=1, role="S", secret_hex=v["S_secret"])
    assert (g["public_key_b64"], s["public_key_b64"]) == (v["G_public_b64"], v["S_public_b64"])


def test_gen1_initiate_is_the_vector_login_initiate_message(peer: PeerProcess) -> None:
    _, s = gen1_pair(peer)
    response = peer.ok("initiate", channel=s, peer_public_b64=gen1()["G_public_b64"])
    assert response["message"] == gen1()["login_initiate_text"]


def test_gen1_accept_initiate_returns_the_scanner_key(peer: PeerProcess) -> None:
    g, _ = gen1_pair(peer)
    response = peer.ok("accept_initiate", channel=g, message=gen1()["login_initiate_text"])
    assert response["peer_public_b64"] == gen1()["S_public_b64"]


def test_gen1_ok_message_is_the_vector_login_ok_message(peer: PeerProcess) -> None:
    g, _ = gen1_pair(peer)
    peer.ok("accept_initiate", channel=g, message=gen1()["login_initiate_text"])
    assert peer.ok("ok_message", channel=g)["message"] == gen1()["login_ok_text"]


def test_gen1_both_sides_show_the_vector_check_code(peer: PeerProcess) -> None:
    v = gen1()
    g, s = gen1_pair(peer)
    peer.ok("initiate", channel=s, peer_public_b64=v["G_public_b64"])
    peer.ok("accept_initiate", channel=g, message=v["login_initiate_text"])
    peer.ok("accept_ok", channel=s, message=v["login_ok_text"])
    expected = {"check_code": v["check_code_text"], "check_bytes_hex": v["check_bytes"]}
    for channel in (g, s):
        response = peer.ok("check_code", channel=channel)
        assert {
            "check_code": response["check_code"],
            "check_bytes_hex": response["check_bytes_hex"],
        } == expected


def established_gen1(peer: PeerProcess) -> tuple[str, str]:
    v = gen1()
    g, s = gen1_pair(peer)
    peer.ok("initiate", channel=s, peer_public_b64=v["G_public_b64"])
    peer.ok("accept_initiate", channel=g, message=v["login_initiate_text"])
    peer.ok("ok_message", channel=g)
    peer.ok("accept_ok", channel=s, message=v["login_ok_text"])
    return g, s


def test_gen1_scanner_second_message_is_the_vector(peer: PeerProcess) -> None:
    _, s = established_gen1(peer)
    vector = gen1()["S_message_1"]
    assert peer.ok("encrypt", channel=s, plaintext=vector["plaintext_text"])["message"] == vector["wire_text"]


def test_gen1_generator_decrypts_the_scanner_vector_message(peer: PeerProcess) -> None:
    g, _ = established_gen1(peer)
    vector = gen1()["S_message_1"]
    assert peer.ok("decrypt", channel=g, message=vector["wire_text"])["plaintext"] == vector["plaintext_text"]


def test_gen1_generator_second_message_is_the_vector(peer: PeerProcess) -> None:
    g, _ = established_gen1(peer)
    vector = gen1()["G_message_1"]
    assert peer.ok("encrypt", channel=g, plaintext=vector["plaintext_text"])["message"] == vector["wire_text"]


def test_gen1_scanner_decrypts_the_generator_vector_message(peer: PeerProcess) -> None:
    _, s = established_gen1(peer)
    vector = gen1()["G_message_1"]
    assert peer.ok("decrypt", channel=s, message=vector["wire_text"])["plaintext"] == vector["plaintext_text"]


# --- Gen-2 HPKE vectors, both label profiles ----------------------------------------------------------------

PROFILES = ["msc", "vodozemac"]  # the names in the shared vector file; "msc" is the older name of "msc4388"


def gen2_pair(peer: PeerProcess, profile: str) -> tuple[str, str]:
    v = gen2()
    common = {
        "generation": 2,
        "profile": profile,
        "base_url": v["base_url_text"],
        "rendezvous_id": v["rendezvous_id_text"],
    }
    g = peer.ok("channel_new", role="G", secret_hex=v["G_secret"], **common)
    s = peer.ok("channel_new", role="S", secret_hex=v["S_secret"], **common)
    return g["channel"], s["channel"]


def gen2_vector(profile: str) -> dict[str, Any]:
    vector: dict[str, Any] = gen2()[f"profile_{profile}"]
    return vector


@pytest.mark.parametrize("profile", PROFILES)
def test_gen2_initiate_is_the_vector_login_initiate_message(peer: PeerProcess, profile: str) -> None:
    v = gen2()
    _, s = gen2_pair(peer, profile)
    response = peer.ok("initiate", channel=s, peer_public_b64=v["G_public_b64"], token=v["tokens"]["after_POST"])
    assert response["message"] == gen2_vector(profile)["login_initiate_b64"]


@pytest.mark.parametrize("profile", PROFILES)
def test_gen2_accept_initiate_returns_the_scanner_key(peer: PeerProcess, profile: str) -> None:
    v = gen2()
    g, _ = gen2_pair(peer, profile)
    response = peer.ok(
        "accept_initiate",
        channel=g,
        message=gen2_vector(profile)["login_initiate_b64"],
        token=v["tokens"]["after_POST"],
    )
    assert response["peer_public_b64"] == v["S_public_b64"]


@pytest.mark.parametrize("profile", PROFILES)
def test_gen2_ok_message_with_fixed_nonce_is_the_vector(peer: PeerProcess, profile: str) -> None:
    v, pv = gen2(), gen2_vector(profile)
    g, _ = gen2_pair(peer, profile)
    peer.ok("accept_initiate", channel=g, message=pv["login_initiate_b64"], token=v["tokens"]["after_POST"])
    response = peer.ok(
        "ok_message",
        channel=g,
        token=v["tokens"]["after_S_PUT_initiate"],
        response_nonce_hex=pv["response_nonce"],
    )
    assert response["message"] == pv["login_ok_b64"]


def established_gen2(peer: PeerProcess, profile: str) -> tuple[str, str]:
    v, pv = gen2(), gen2_vector(profile)
    tokens = v["tokens"]
    g, s = gen2_pair(peer, profile)
    peer.ok("initiate", channel=s, peer_public_b64=v["G_public_b64"], token=tokens["after_POST"])
    peer.ok("accept_initiate", channel=g, message=pv["login_initiate_b64"], token=tokens["after_POST"])
    peer.ok("ok_message", channel=g, token=tokens["after_S_PUT_initiate"], response_nonce_hex=pv["response_nonce"])
    peer.ok("accept_ok", channel=s, message=pv["login_ok_b64"], token=tokens["after_S_PUT_initiate"])
    return g, s


@pytest.mark.parametrize("profile", PROFILES)
def test_gen2_both_sides_show_the_vector_check_code(peer: PeerProcess, profile: str) -> None:
    pv = gen2_vector(profile)
    for channel in established_gen2(peer, profile):
        response = peer.ok("check_code", channel=channel)
        assert (response["check_code"], response["check_bytes_hex"]) == (
            pv["check_code_text"],
            pv["check_bytes"],
        )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("sender", "message"), [("G", "G_message_1"), ("S", "S_message_1")])
def test_gen2_later_message_is_the_vector(peer: PeerProcess, profile: str, sender: str, message: str) -> None:
    vector = gen2_vector(profile)[message]
    g, s = established_gen2(peer, profile)
    channel = g if sender == "G" else s
    response = peer.ok("encrypt", channel=channel, plaintext=vector["plaintext_text"], token=vector["aad_token_text"])
    assert response["message"] == vector["wire_b64"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("receiver", "message"), [("S", "G_message_1"), ("G", "S_message_1")])
def test_gen2_vector_message_decrypts(peer: PeerProcess, profile: str, receiver: str, message: str) -> None:
    vector = gen2_vector(profile)[message]
    g, s = established_gen2(peer, profile)
    channel = g if receiver == "G" else s
    response = peer.ok("decrypt", channel=channel, message=vector["wire_b64"], token=vector["aad_token_text"])
    assert response["plaintext"] == vector["plaintext_text"]


# --- Element X's bytes: the element-x profile (element-x-vectors.json) ---------------------------------------

EX_CASES = ["root_base_url", "path_base_url"]


def ex() -> dict[str, Any]:
    vectors: dict[str, Any] = element_x()["hpke"]
    return vectors


def ex_token(message: str) -> str:
    """The sequence token the vector binds ``message`` to (``login_initiate``, ``login_ok``, …)."""
    hpke = ex()
    token: str = hpke["tokens"][hpke["token_use"][message]]
    return token


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_qr_decode_names_the_element_x_profile(peer: PeerProcess, case: str) -> None:
    vector = ex()[case]
    response = peer.ok("qr_decode", hex=vector["qr_hex"])
    assert (response["profile"], response["base_url"], response["intent"], response["public_key_b64"]) == (
        "element-x",
        vector["base_url_text"],
        vector["intent"],
        ex()["G_public_b64"],
    )


@pytest.mark.parametrize("name", ["login", "reciprocate", "base64"])
def test_element_x_qr_encode_reproduces_rust_sdks_own_codes(peer: PeerProcess, name: str) -> None:
    qr = element_x()["qr"]
    vector = qr[name]
    fields = {
        "generation": 2,
        "public_key_b64": vector.get("public_key_b64", qr["public_key_b64"]),
        "intent": vector["intent"],
        "rendezvous_id": vector["rendezvous_id_text"],
        # What Element X encodes from: its parsed Url, root "/" included; the QR drops it.
        "base_url": vector["rust_base_url_as_str"],
        "profile": "element-x",
    }
    assert peer.ok("qr_encode", **fields)["hex"] == vector["hex"]


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_qr_decode_fed_back_to_qr_encode_gives_the_same_bytes(peer: PeerProcess, case: str) -> None:
    vector = ex()[case]
    assert peer.ok("qr_encode", **peer.ok("qr_decode", hex=vector["qr_hex"]))["hex"] == vector["qr_hex"]


@pytest.mark.parametrize("case", EX_CASES)
@pytest.mark.parametrize("g_base_url", ["qr", "aad"])
def test_element_x_transcript_is_element_xs_bytes(peer: PeerProcess, case: str, g_base_url: str) -> None:
    """The whole channel transcript, byte for byte, with the vectors' fixed keys, nonce and tokens.

    S takes the base URL as written in the QR code; G either the same or the homeserver URL it showed the code
    for (for the root case, with the ``/`` the code drops): both bind its serialisation.
    """
    hpke, vector = ex(), ex()[case]
    common = {"generation": 2, "profile": "element-x", "rendezvous_id": hpke["rendezvous_id_text"]}
    g_url = vector["base_url_text"] if g_base_url == "qr" else vector["aad_base_url_text"]
    g = peer.ok("channel_new", role="G", secret_hex=hpke["G_secret"], base_url=g_url, **common)["channel"]
    s_new = peer.ok("channel_new", role="S", secret_hex=hpke["S_secret"], base_url=vector["base_url_text"], **common)
    s = s_new["channel"]
    assert s_new["public_key_b64"] == hpke["S_public_b64"]

    initiate = peer.ok("initiate", channel=s, peer_public_b64=hpke["G_public_b64"], token=ex_token("login_initiate"))
    assert initiate["message"] == vector["login_initiate_b64"]
    accepted = peer.ok("accept_initiate", channel=g, message=initiate["message"], token=ex_token("login_initiate"))
    assert accepted["peer_public_b64"] == hpke["S_public_b64"]
    ok = peer.ok("ok_message", channel=g, token=ex_token("login_ok"), response_nonce_hex=hpke["response_nonce"])
    assert ok["message"] == vector["login_ok_b64"]
    peer.ok("accept_ok", channel=s, message=ok["message"], token=ex_token("login_ok"))

    for channel in (g, s):
        code = peer.ok("check_code", channel=channel)
        assert (code["check_code"], code["check_bytes_hex"]) == (hpke["check_code_text"], hpke["check_bytes"])

    for sender, receiver, message in ((g, s, "G_message_1"), (s, g, "S_message_1")):
        plaintext, token = hpke[f"{message}_plaintext_text"], ex_token(message)
        sealed = peer.ok("encrypt", channel=sender, plaintext=plaintext, token=token)["message"]
        assert sealed == vector[f"{message}_b64"]
        assert peer.ok("decrypt", channel=receiver, message=sealed, token=token)["plaintext"] == plaintext


@pytest.mark.parametrize("case", EX_CASES)
@pytest.mark.parametrize("other", ["msc4388", "msc", "vodozemac"])
def test_element_x_login_initiate_does_not_open_under_another_profile(peer: PeerProcess, case: str, other: str) -> None:
    hpke, vector = ex(), ex()[case]
    g = peer.ok(
        "channel_new",
        generation=2,
        role="G",
        profile=other,
        secret_hex=hpke["G_secret"],
        base_url=vector["base_url_text"],
        rendezvous_id=hpke["rendezvous_id_text"],
    )["channel"]
    response = peer.request(
        "accept_initiate", channel=g, message=vector["login_initiate_b64"], token=ex_token("login_initiate")
    )
    assert (response["ok"], response["error"]) == (False, "DecryptionError")


def test_hello_lists_the_canonical_profile_names(peer: PeerProcess) -> None:
    assert peer.ok("hello")["profiles"] == ["element-x", "msc4388", "vodozemac"]


def test_unknown_profile_is_an_invalid_field_value(peer: PeerProcess) -> None:
    response = peer.request(
        "channel_new", generation=2, role="G", profile="element_x", base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID
    )
    assert response["error"] == "InvalidFieldValue"


# --- two peers, random keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_peer() -> Iterator[PeerProcess]:
    process = PeerProcess()
    yield process
    process.close()


def test_two_peers_complete_a_gen1_handshake_and_talk(peer: PeerProcess, other_peer: PeerProcess) -> None:
    g = peer.ok("channel_new", generation=1, role="G")
    s = other_peer.ok("channel_new", generation=1, role="S")
    initiate = other_peer.ok("initiate", channel=s["channel"], peer_public_b64=g["public_key_b64"])
    accepted = peer.ok("accept_initiate", channel=g["channel"], message=initiate["message"])
    assert accepted["peer_public_b64"] == s["public_key_b64"]
    ok = peer.ok("ok_message", channel=g["channel"])
    other_peer.ok("accept_ok", channel=s["channel"], message=ok["message"])
    g_code = peer.ok("check_code", channel=g["channel"])
    s_code = other_peer.ok("check_code", channel=s["channel"])
    assert (g_code["check_code"], g_code["check_bytes_hex"]) == (
        s_code["check_code"],
        s_code["check_bytes_hex"],
    )
    wire = other_peer.ok("encrypt", channel=s["channel"], plaintext='{"type":"m.login.protocols"}')["message"]
    assert peer.ok("decrypt", channel=g["channel"], message=wire)["plaintext"] == '{"type":"m.login.protocols"}'
    wire = peer.ok("encrypt", channel=g["channel"], plaintext="réponse ✓")["message"]
    assert other_peer.ok("decrypt", channel=s["channel"], message=wire)["plaintext"] == "réponse ✓"


@pytest.mark.parametrize("profile", PROFILES)
def test_two_peers_complete_a_gen2_handshake_and_talk(peer: PeerProcess, other_peer: PeerProcess, profile: str) -> None:
    where = {"generation": 2, "profile": profile, "base_url": BASE_URL, "rendezvous_id": RENDEZVOUS_ID}
    g = peer.ok("channel_new", role="G", **where)
    s = other_peer.ok("channel_new", role="S", **where)
    initiate = other_peer.ok("initiate", channel=s["channel"], peer_public_b64=g["public_key_b64"], token="1")
    accepted = peer.ok("accept_initiate", channel=g["channel"], message=initiate["message"], token="1")
    assert accepted["peer_public_b64"] == s["public_key_b64"]
    ok = peer.ok("ok_message", channel=g["channel"], token="2")
    other_peer.ok("accept_ok", channel=s["channel"], message=ok["message"], token="2")
    g_code = peer.ok("check_code", channel=g["channel"])
    s_code = other_peer.ok("check_code", channel=s["channel"])
    assert g_code["check_code"] == s_code["check_code"]
    assert 10 <= int(g_code["check_code"]) <= 99
    wire = other_peer.ok("encrypt", channel=s["channel"], plaintext="hello G", token="3")["message"]
    assert peer.ok("decrypt", channel=g["channel"], message=wire, token="3")["plaintext"] == "hello G"
    wire = peer.ok("encrypt", channel=g["channel"], plaintext="hello S", token="4")["message"]
    assert other_peer.ok("decrypt", channel=s["channel"], message=wire, token="4")["plaintext"] == "hello S"


def test_gen2_message_opened_with_another_token_fails(peer: PeerProcess, other_peer: PeerProcess) -> None:
    where = {"generation": 2, "base_url": BASE_URL, "rendezvous_id": RENDEZVOUS_ID}
    g = peer.ok("channel_new", role="G", **where)
    s = other_peer.ok("channel_new", role="S", **where)
    initiate = other_peer.ok("initiate", channel=s["channel"], peer_public_b64=g["public_key_b64"], token="1")
    response = peer.request("accept_initiate", channel=g["channel"], message=initiate["message"], token="2")
    assert response["error"] == "DecryptionError"


def test_binary_plaintext_travels_as_hex(peer: PeerProcess) -> None:
    g, s = established_gen1(peer)
    wire = peer.ok("encrypt", channel=s, plaintext_hex="00ff10")["message"]
    response = peer.ok("decrypt", channel=g, message=wire)
    assert (response["plaintext_hex"], response["plaintext"]) == ("00ff10", None)


# --- errors -------------------------------------------------------------------------------------------------


def test_bad_json_line_is_a_bad_json_failure(peer: PeerProcess) -> None:
    response = peer.send_line(b'{"op": "hello"')
    assert (response["ok"], response["error"]) == (False, "BadJson")


def test_line_that_is_not_utf8_is_a_bad_json_failure(peer: PeerProcess) -> None:
    assert peer.send_line(b'{"op": "\xff"}')["error"] == "BadJson"


def test_json_that_is_not_an_object_is_a_bad_request(peer: PeerProcess) -> None:
    assert peer.send_line(b"[1, 2]")["error"] == "BadRequest"


def test_unknown_op_is_an_unknown_op_failure(peer: PeerProcess) -> None:
    response = peer.request("teleport")
    assert (response["ok"], response["error"]) == (False, "UnknownOp")


def test_unknown_channel_is_an_unknown_channel_failure(peer: PeerProcess) -> None:
    assert peer.request("check_code", channel="ch999999")["error"] == "UnknownChannel"


def test_missing_field_is_a_missing_field_failure(peer: PeerProcess) -> None:
    assert peer.request("channel_new", role="G")["error"] == "MissingField"


def test_field_of_the_wrong_type_is_an_invalid_field_value_failure(peer: PeerProcess) -> None:
    assert peer.request("channel_new", generation="1", role="G")["error"] == "InvalidFieldValue"


def test_boolean_is_not_accepted_as_a_generation(peer: PeerProcess) -> None:
    assert peer.request("channel_new", generation=True, role="G")["error"] == "InvalidFieldValue"


def test_gen2_channel_without_token_is_a_missing_sequence_token_failure(peer: PeerProcess) -> None:
    s = peer.ok("channel_new", generation=2, role="S", base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID)
    response = peer.request("initiate", channel=s["channel"], peer_public_b64=gen2()["G_public_b64"])
    assert response["error"] == "MissingSequenceToken"


def test_profile_on_a_gen1_channel_is_rejected(peer: PeerProcess) -> None:
    assert peer.request("channel_new", generation=1, role="G", profile="msc")["error"] == "InvalidFieldValue"


def test_tampered_message_is_a_decryption_error(peer: PeerProcess) -> None:
    g, _ = established_gen1(peer)
    wire = gen1()["S_message_1"]["wire_text"]
    tampered = ("J" if wire[0] != "J" else "K") + wire[1:]
    assert peer.request("decrypt", channel=g, message=tampered)["error"] == "DecryptionError"


def test_replayed_message_is_a_decryption_error(peer: PeerProcess) -> None:
    g, _ = established_gen1(peer)
    wire = gen1()["S_message_1"]["wire_text"]
    peer.ok("decrypt", channel=g, message=wire)
    assert peer.request("decrypt", channel=g, message=wire)["error"] == "DecryptionError"


def test_login_initiate_without_its_key_part_is_a_message_decode_error(peer: PeerProcess) -> None:
    g, _ = gen1_pair(peer)
    response = peer.request("accept_initiate", channel=g, message=gen1()["S_message_1"]["wire_text"])
    assert response["error"] == "MessageDecodeError"


def test_process_keeps_answering_after_failures(fresh_peer: PeerProcess) -> None:
    fresh_peer.send_line(b"not json")
    fresh_peer.request("teleport")
    fresh_peer.request("decrypt", channel="nope", message="AAAA")
    assert fresh_peer.ok("hello")["implementation"] == "qrlink"


def test_channel_close_forgets_the_channel(peer: PeerProcess) -> None:
    channel = peer.ok("channel_new", generation=1, role="G")["channel"]
    peer.ok("channel_close", channel=channel)
    assert peer.request("check_code", channel=channel)["error"] == "UnknownChannel"


def test_secret_keys_never_appear_in_any_response(fresh_peer: PeerProcess) -> None:
    secret = gen1()["G_secret"]
    bad_secret = secret[:-2]  # 31 bytes: rejected, and the rejection must not quote it
    g = fresh_peer.ok("channel_new", generation=1, role="G", secret_hex=secret)["channel"]
    fresh_peer.request("channel_new", generation=1, role="G", secret_hex=bad_secret)
    fresh_peer.request("channel_new", generation=1, role="G", secret_hex=secret + "zz")
    fresh_peer.request("channel_new", generation=1, role="G", secret_hex=secret, profile="vodozemac")
    fresh_peer.request("accept_initiate", channel=g, message=secret)
    fresh_peer.request("decrypt", channel=g, message=secret)
    fresh_peer.send_line(b'{"op": "channel_new", "secret_hex": "' + secret.encode() + b'"')
    fresh_peer.request(secret)
    output = b"".join(fresh_peer.transcript).lower()
    assert secret.encode() not in output
    assert bad_secret.encode() not in output


# --- the process --------------------------------------------------------------------------------------------


def test_hello_names_the_implementation_and_required_ops(peer: PeerProcess) -> None:
    response = peer.ok("hello")
    required = {
        "qr_decode",
        "qr_encode",
        "channel_new",
        "initiate",
        "accept_initiate",
        "ok_message",
        "accept_ok",
        "check_code",
        "encrypt",
        "decrypt",
        "channel_close",
        "handshake_start",
    }
    assert response["implementation"] == "qrlink"
    assert required <= set(response["ops"])


def test_request_id_is_echoed(peer: PeerProcess) -> None:
    assert peer.ok("hello", id="req-7")["id"] == "req-7"
    assert peer.request("teleport", id=8)["id"] == 8


def test_each_response_is_flushed_before_the_next_request(fresh_peer: PeerProcess) -> None:
    # send_line blocks on readline with stdin still open, so an unflushed answer would hang this test.
    for _ in range(3):
        assert fresh_peer.ok("hello")["ok"] is True


def test_blank_lines_get_no_answer(fresh_peer: PeerProcess) -> None:
    assert fresh_peer.send_line(b"\n  \n" + json.dumps({"op": "hello", "id": 1}).encode())["id"] == 1


def test_end_of_input_exits_with_status_zero(fresh_peer: PeerProcess) -> None:
    fresh_peer.ok("hello")
    assert fresh_peer.close() == 0


def test_failures_print_nothing_on_stderr(fresh_peer: PeerProcess) -> None:
    fresh_peer.send_line(b"{")
    fresh_peer.request("decrypt", channel="x", message="!!")
    fresh_peer.request("qr_decode", hex="00")
    fresh_peer.close()
    assert fresh_peer.stderr == b""
