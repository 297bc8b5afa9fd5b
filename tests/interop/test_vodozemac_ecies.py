"""Our Gen-1 ECIES channel against vodozemac's (matrix-sdk-crypto-wasm 18.9.0, the crypto Element Web ships),
both roles: handshake, check code, several messages each way, rejecting tampered and replayed messages."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from qrlink_client.channel import DecryptionError, EciesChannel
from tests.peers.node import NodeDriver, NodeDriverError

pytestmark = pytest.mark.node

LOGIN_INITIATE = "MATRIX_QR_CODE_LOGIN_INITIATE"
LOGIN_OK = "MATRIX_QR_CODE_LOGIN_OK"
# Non-ASCII on purpose: both sides must agree that a message is UTF-8 bytes.
PAYLOADS = [
    '{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"https://h.example/"}',
    '{"type":"m.login.success"}',
    '{"type":"m.login.secrets","note":"h\u00e9llo \u2713"}',
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def tampered(message: str) -> str:
    """The same message with one ciphertext bit flipped."""
    raw = bytearray(unb64(message))
    raw[0] ^= 0x01
    return b64(bytes(raw))


@dataclass
class Established:
    """Our channel and the wasm channel handle, after a complete handshake."""

    ours: EciesChannel
    wasm: NodeDriver
    theirs: str  # handle of the wasm EstablishedEcies
    wasm_public_key: str

    def to_wasm(self, plaintext: str) -> str:
        """Encrypt on our side, decrypt in wasm."""
        message = self.ours.encrypt(plaintext.encode())
        return str(self.wasm.call("decrypt", channel=self.theirs, message=message)["plaintext"])

    def wasm_message(self, plaintext: str) -> str:
        """A message encrypted by wasm (its next nonce)."""
        return str(self.wasm.call("encrypt", channel=self.theirs, plaintext=plaintext)["message"])

    def to_ours(self, plaintext: str) -> str:
        """Encrypt in wasm, decrypt on our side."""
        return self.ours.decrypt(self.wasm_message(plaintext)).decode()

    def wasm_check_code(self) -> dict[str, str]:
        return self.wasm.call("check_code", channel=self.theirs)


def ours_generator(wasm: NodeDriver) -> Established:
    """Our channel is G (its key is in the QR); wasm is S and speaks first."""
    ours = EciesChannel.generator()
    scanner = wasm.call("ecies_outbound", public_key=b64(ours.public_key))
    assert ours.accept_initiate(scanner["message"]) == unb64(scanner["public_key"])
    assert wasm.call("decrypt", channel=scanner["channel"], message=ours.ok_message())["plaintext"] == LOGIN_OK
    return Established(ours, wasm, scanner["channel"], scanner["public_key"])


def ours_scanner(wasm: NodeDriver) -> Established:
    """wasm is G (its key is in the QR); our channel is S and speaks first."""
    generator = wasm.call("ecies_new")
    ours = EciesChannel.scanner()
    inbound = wasm.call(
        "ecies_inbound", handle=generator["handle"], message=ours.initiate(unb64(generator["public_key"]))
    )
    assert inbound["plaintext"] == LOGIN_INITIATE
    ours.accept_ok(wasm.call("encrypt", channel=inbound["channel"], plaintext=LOGIN_OK)["message"])
    return Established(ours, wasm, inbound["channel"], generator["public_key"])


ROLES: dict[str, Callable[[NodeDriver], Established]] = {"ours-G": ours_generator, "ours-S": ours_scanner}
both_roles = pytest.mark.parametrize("establish", ROLES.values(), ids=ROLES.keys())


@both_roles
def test_handshake_completes_with_equal_check_codes(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)

    theirs = channel.wasm_check_code()
    assert channel.ours.check_code.raw.hex() == theirs["bytes"]
    assert channel.ours.check_code.digits == theirs["digits"]


@both_roles
def test_check_code_matches_what_the_wasm_side_displays(
    wasm: NodeDriver, establish: Callable[..., Established]
) -> None:
    channel = establish(wasm)

    assert channel.ours.check_code.matches(channel.wasm_check_code()["digits"])


@both_roles
def test_alternating_messages_decrypt_on_both_sides(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)

    for payload in PAYLOADS:
        assert channel.to_wasm(payload) == payload
        assert channel.to_ours(payload) == payload


@both_roles
def test_consecutive_messages_in_one_direction_decrypt_in_order(
    wasm: NodeDriver, establish: Callable[..., Established]
) -> None:
    channel = establish(wasm)

    assert [channel.to_wasm(p) for p in PAYLOADS] == PAYLOADS
    assert [channel.to_ours(p) for p in PAYLOADS] == PAYLOADS


@both_roles
def test_ours_rejects_tampered_wasm_message(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)
    message = channel.wasm_message(PAYLOADS[0])

    with pytest.raises(DecryptionError):
        channel.ours.decrypt(tampered(message))


@both_roles
def test_ours_still_accepts_the_genuine_message_after_a_tampered_one(
    wasm: NodeDriver, establish: Callable[..., Established]
) -> None:
    channel = establish(wasm)
    message = channel.wasm_message(PAYLOADS[0])
    with pytest.raises(DecryptionError):
        channel.ours.decrypt(tampered(message))

    assert channel.ours.decrypt(message).decode() == PAYLOADS[0]


@both_roles
def test_ours_rejects_replayed_wasm_message(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)
    message = channel.wasm_message(PAYLOADS[0])
    channel.ours.decrypt(message)

    with pytest.raises(DecryptionError):
        channel.ours.decrypt(message)


@both_roles
def test_ours_rejects_skipped_wasm_message(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)
    channel.wasm_message(PAYLOADS[0])  # sent but lost

    with pytest.raises(DecryptionError):
        channel.ours.decrypt(channel.wasm_message(PAYLOADS[1]))


@both_roles
def test_wasm_rejects_tampered_message_from_ours(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)
    message = channel.ours.encrypt(PAYLOADS[0].encode())

    with pytest.raises(NodeDriverError, match="Failed decrypting"):
        wasm.call("decrypt", channel=channel.theirs, message=tampered(message))


@both_roles
def test_wasm_rejects_replayed_message_from_ours(wasm: NodeDriver, establish: Callable[..., Established]) -> None:
    channel = establish(wasm)
    message = channel.ours.encrypt(PAYLOADS[0].encode())
    wasm.call("decrypt", channel=channel.theirs, message=message)

    with pytest.raises(NodeDriverError, match="Failed decrypting"):
        wasm.call("decrypt", channel=channel.theirs, message=message)


def test_wasm_generator_rejects_initiate_for_another_key(wasm: NodeDriver) -> None:
    wasm_generator = wasm.call("ecies_new")
    stranger = EciesChannel.generator()

    initiate = EciesChannel.scanner().initiate(stranger.public_key)

    with pytest.raises(NodeDriverError):
        wasm.call("ecies_inbound", handle=wasm_generator["handle"], message=initiate)


def test_ours_generator_rejects_wasm_initiate_for_another_key(wasm: NodeDriver) -> None:
    stranger = wasm.call("ecies_new")
    initiate = wasm.call("ecies_outbound", public_key=stranger["public_key"])["message"]

    with pytest.raises(DecryptionError):
        EciesChannel.generator().accept_initiate(initiate)
