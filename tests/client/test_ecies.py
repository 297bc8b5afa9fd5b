"""Gen-1 ECIES channel: the validated vector, handshake rules, ordering, errors and secrecy of reprs."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrlink_client._b64 import b64decode, b64encode
from qrlink_client.channel import (
    ChannelStateError,
    DecryptionError,
    EciesChannel,
    HandshakeError,
    InvalidKey,
    MessageDecodeError,
    NonContributoryKey,
    Role,
    SecureChannel,
)
from qrlink_client.channel.ecies import _derive_keys

from ._channels import ecies_pair
from ._vectors import qr_login, wasm_qr

V = qr_login()["gen1_ecies"]
G_SECRET = bytes.fromhex(V["G_secret"])
S_SECRET = bytes.fromhex(V["S_secret"])
ZERO_KEY = bytes(32)  # a low-order point: X25519 with it is all zeros


def _vector_pair() -> tuple[EciesChannel, EciesChannel]:
    return EciesChannel.generator(G_SECRET), EciesChannel.scanner(S_SECRET)


# --- the vector ---------------------------------------------------------------------------------------------


def test_public_keys_match_vector() -> None:
    generator, scanner = _vector_pair()
    assert (b64encode(generator.public_key), b64encode(scanner.public_key)) == (
        V["G_public_b64"],
        V["S_public_b64"],
    )


def test_derived_keys_match_vector() -> None:
    keys = _derive_keys(bytes.fromhex(V["shared_secret"]), b64decode(V["G_public_b64"]), b64decode(V["S_public_b64"]))
    assert (keys.enc_key_s.hex(), keys.enc_key_g.hex(), keys.check_bytes.hex()) == (
        V["enc_key_S"],
        V["enc_key_G"],
        V["check_bytes"],
    )


def test_login_initiate_matches_vector() -> None:
    generator, scanner = _vector_pair()
    assert scanner.initiate(generator.public_key) == V["login_initiate_text"]


def test_accept_initiate_returns_scanner_key() -> None:
    generator, _ = _vector_pair()
    assert b64encode(generator.accept_initiate(V["login_initiate_text"])) == V["S_public_b64"]


def test_login_ok_matches_vector() -> None:
    generator, _ = _vector_pair()
    generator.accept_initiate(V["login_initiate_text"])
    assert generator.ok_message() == V["login_ok_text"]


def test_check_code_matches_vector_on_both_sides() -> None:
    generator, scanner = _vector_pair()
    scanner.initiate(generator.public_key)
    generator.accept_initiate(V["login_initiate_text"])
    scanner.accept_ok(V["login_ok_text"])
    assert generator.check_code.digits == scanner.check_code.digits == V["check_code_text"]
    assert scanner.check_code.raw.hex() == V["check_bytes"]


def test_later_messages_match_vector_in_both_directions() -> None:
    generator, scanner = ecies_pair(G_SECRET, S_SECRET)
    s_plain = V["S_message_1"]["plaintext_text"].encode()
    g_plain = V["G_message_1"]["plaintext_text"].encode()
    assert scanner.encrypt(s_plain) == V["S_message_1"]["wire_text"]
    assert generator.encrypt(g_plain) == V["G_message_1"]["wire_text"]
    assert generator.decrypt(V["S_message_1"]["wire_text"]) == s_plain
    assert scanner.decrypt(V["G_message_1"]["wire_text"]) == g_plain


def test_wasm_initiate_framing_parses_up_to_authentication() -> None:
    # Keys of the wasm transcript are unknown, so the best a stranger G can reach is the tag check.
    with pytest.raises(DecryptionError):
        EciesChannel.generator().accept_initiate(wasm_qr()["ecies"]["login_initiate"])


def test_padded_base64_is_accepted() -> None:
    ciphertext, key = V["login_initiate_text"].split("|")
    generator, _ = _vector_pair()
    assert generator.accept_initiate(f"{ciphertext}|{key}=") == b64decode(V["S_public_b64"])


def test_channels_satisfy_the_secure_channel_interface() -> None:
    channel: SecureChannel = EciesChannel.generator()
    assert channel.role is Role.GENERATOR


# --- handshake rules ----------------------------------------------------------------------------------------


def _initiate_with_plaintext(generator: EciesChannel, plaintext: bytes) -> str:
    scanner = EciesChannel.scanner(S_SECRET)
    keys = _derive_keys(scanner._key_pair.exchange(generator.public_key), generator.public_key, scanner.public_key)
    ciphertext = ChaCha20Poly1305(keys.enc_key_s).encrypt(bytes(12), plaintext, None)
    return f"{b64encode(ciphertext)}|{b64encode(scanner.public_key)}"


def test_wrong_initiate_plaintext_is_handshake_error() -> None:
    generator = EciesChannel.generator(G_SECRET)
    with pytest.raises(HandshakeError):
        generator.accept_initiate(_initiate_with_plaintext(generator, b"MATRIX_QR_CODE_LOGIN_INITIATX"))


def test_failed_accept_initiate_leaves_generator_ready_for_the_real_one() -> None:
    generator = EciesChannel.generator(G_SECRET)
    with pytest.raises(HandshakeError):
        generator.accept_initiate(_initiate_with_plaintext(generator, b"nope"))
    assert b64encode(generator.accept_initiate(V["login_initiate_text"])) == V["S_public_b64"]


def test_wrong_ok_plaintext_is_handshake_error_and_does_not_consume_the_nonce() -> None:
    generator, scanner = _vector_pair()
    scanner.initiate(generator.public_key)
    keys = _derive_keys(bytes.fromhex(V["shared_secret"]), generator.public_key, scanner.public_key)
    forged = b64encode(ChaCha20Poly1305(keys.enc_key_g).encrypt(bytes(12), b"MATRIX_QR_CODE_LOGIN_NO", None))
    with pytest.raises(HandshakeError):
        scanner.accept_ok(forged)
    scanner.accept_ok(V["login_ok_text"])
    assert scanner.established


def test_login_ok_sealed_with_nonce_one_is_rejected() -> None:
    # The 2024 MSC text says LoginOk uses nonce 1; every shipping client uses G's nonce 0.
    generator, scanner = _vector_pair()
    scanner.initiate(generator.public_key)
    keys = _derive_keys(bytes.fromhex(V["shared_secret"]), generator.public_key, scanner.public_key)
    nonce_one = (1).to_bytes(12, "little")
    with pytest.raises(DecryptionError):
        scanner.accept_ok(
            b64encode(ChaCha20Poly1305(keys.enc_key_g).encrypt(nonce_one, b"MATRIX_QR_CODE_LOGIN_OK", None))
        )


def test_initiate_to_low_order_key_is_non_contributory() -> None:
    with pytest.raises(NonContributoryKey):
        EciesChannel.scanner().initiate(ZERO_KEY)


def test_initiate_message_with_low_order_key_is_non_contributory() -> None:
    with pytest.raises(NonContributoryKey):
        EciesChannel.generator().accept_initiate(f"{b64encode(bytes(45))}|{b64encode(ZERO_KEY)}")


def test_initiate_to_short_key_is_invalid_key() -> None:
    with pytest.raises(InvalidKey):
        EciesChannel.scanner().initiate(bytes(31))


def test_secret_key_of_wrong_length_is_invalid_key() -> None:
    with pytest.raises(InvalidKey):
        EciesChannel.generator(bytes(16))


# --- ordering -----------------------------------------------------------------------------------------------


def test_replayed_message_is_rejected() -> None:
    generator, scanner = ecies_pair()
    message = scanner.encrypt(b"one")
    generator.decrypt(message)
    with pytest.raises(DecryptionError):
        generator.decrypt(message)


def test_out_of_order_message_is_rejected_then_in_order_delivery_works() -> None:
    generator, scanner = ecies_pair()
    first, second = scanner.encrypt(b"one"), scanner.encrypt(b"two")
    with pytest.raises(DecryptionError):
        generator.decrypt(second)
    assert [generator.decrypt(first), generator.decrypt(second)] == [b"one", b"two"]


def test_tampered_message_is_rejected() -> None:
    generator, scanner = ecies_pair()
    raw = bytearray(b64decode(scanner.encrypt(b"payload")))
    raw[0] ^= 1
    with pytest.raises(DecryptionError):
        generator.decrypt(b64encode(bytes(raw)))


def test_own_message_cannot_be_decrypted_as_the_peers() -> None:
    generator, _ = ecies_pair()
    with pytest.raises(DecryptionError):
        generator.decrypt(generator.encrypt(b"echo"))


# --- framing errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "no-separator",
        "!!!|" + V["S_public_b64"],
        V["login_initiate_text"].split("|")[0] + "|AAAA",
        b64encode(bytes(15)) + "|" + V["S_public_b64"],
        V["login_initiate_text"].split("|")[0] + "|not base64",
    ],
    ids=["no separator", "bad ciphertext base64", "short key", "short ciphertext", "bad key base64"],
)
def test_malformed_initiate_is_message_decode_error(message: str) -> None:
    with pytest.raises(MessageDecodeError):
        EciesChannel.generator().accept_initiate(message)


@pytest.mark.parametrize(
    "message", ["", "ab", "A" * 20, "éé"], ids=["empty", "bad base64", "too short for tag", "unicode"]
)
def test_malformed_message_is_message_decode_error(message: str) -> None:
    generator, _ = ecies_pair()
    with pytest.raises(MessageDecodeError):
        generator.decrypt(message)


# --- state --------------------------------------------------------------------------------------------------


def test_encrypt_before_established_is_state_error() -> None:
    with pytest.raises(ChannelStateError):
        EciesChannel.scanner().encrypt(b"x")


def test_generator_cannot_encrypt_before_sending_login_ok() -> None:
    generator = EciesChannel.generator(G_SECRET)
    generator.accept_initiate(V["login_initiate_text"])
    with pytest.raises(ChannelStateError):
        generator.encrypt(b"x")


def test_generator_cannot_initiate() -> None:
    with pytest.raises(ChannelStateError):
        EciesChannel.generator().initiate(bytes(range(32)))


def test_scanner_cannot_accept_initiate() -> None:
    with pytest.raises(ChannelStateError):
        EciesChannel.scanner().accept_initiate(V["login_initiate_text"])


def test_ok_message_is_sent_only_once() -> None:
    generator = EciesChannel.generator(G_SECRET)
    generator.accept_initiate(V["login_initiate_text"])
    generator.ok_message()
    with pytest.raises(ChannelStateError):
        generator.ok_message()


def test_scanner_check_code_is_unavailable_before_login_ok() -> None:
    generator, scanner = _vector_pair()
    scanner.initiate(generator.public_key)
    with pytest.raises(ChannelStateError):
        _ = scanner.check_code


def test_generator_check_code_is_available_after_accept_initiate() -> None:
    generator = EciesChannel.generator(G_SECRET)
    generator.accept_initiate(V["login_initiate_text"])
    assert generator.check_code.matches(V["check_code_text"])


# --- secrecy ------------------------------------------------------------------------------------------------


def test_repr_shows_no_secret_material() -> None:
    generator, scanner = ecies_pair(G_SECRET, S_SECRET)
    text = repr(generator) + repr(scanner) + repr(generator._keys) + repr(generator.check_code)
    for secret in (G_SECRET, S_SECRET, bytes.fromhex(V["enc_key_S"]), bytes.fromhex(V["enc_key_G"])):
        assert secret.hex() not in text
        assert b64encode(secret) not in text
    assert V["check_code_text"] not in repr(generator.check_code)
