"""Recovery keys: base58 with the 0x8B 0x01 prefix and a parity byte (spec "Key representation")."""

from __future__ import annotations

import secrets

import pytest

from qrlink_client.e2ee import (
    RecoveryKeyFormatError,
    RecoveryKeyParityError,
    RecoveryKeyPrefixError,
    decode_recovery_key,
    encode_recovery_key,
)

# Known-answer vector from matrix-rust-sdk's secret storage tests (whitespace deliberately irregular).
KNOWN_TEXT = "EsT           pRvZTnjck8    YrhRAtw XLS84Nr2r9S9LGAWDaExVAPBvLRK   "
KNOWN_KEY = bytes(
    [
        159, 189, 70, 187, 52, 81, 113, 198, 246, 2, 44, 154, 37, 213, 104, 27,
        165, 78, 236, 106, 108, 73, 83, 243, 173, 192, 185, 110, 157, 145, 173, 163,
    ]
)  # fmt: skip


def test_known_recovery_key_decodes_to_its_bytes() -> None:
    assert decode_recovery_key(KNOWN_TEXT) == KNOWN_KEY


def test_known_key_encodes_to_the_known_text_in_groups_of_four() -> None:
    assert encode_recovery_key(KNOWN_KEY) == "EsTp RvZT njck 8Yrh RAtw XLS8 4Nr2 r9S9 LGAW DaEx VAPB vLRK"


def test_encoding_then_decoding_returns_the_key() -> None:
    key = secrets.token_bytes(32)
    assert decode_recovery_key(encode_recovery_key(key)) == key


def test_wrong_parity_byte_is_rejected() -> None:
    with pytest.raises(RecoveryKeyParityError):
        decode_recovery_key("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk")


def test_wrong_prefix_is_rejected() -> None:
    with pytest.raises(RecoveryKeyPrefixError):
        decode_recovery_key("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk")


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(RecoveryKeyFormatError):
        decode_recovery_key("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9")


@pytest.mark.parametrize("character", ["0", "O", "I", "l", "+"])
def test_characters_outside_the_base58_alphabet_are_rejected(character: str) -> None:
    with pytest.raises(RecoveryKeyFormatError):
        decode_recovery_key("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLR" + character)


def test_error_messages_do_not_echo_the_key() -> None:
    with pytest.raises(RecoveryKeyParityError) as caught:
        decode_recovery_key("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk")
    assert "EsTp" not in str(caught.value)
