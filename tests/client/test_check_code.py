"""Check-code digit rules (vodozemac's KATs) and the comparison the user's input goes through."""

from __future__ import annotations

import pytest

from qrlink_client.channel import CheckCode

from ._vectors import element_x, qr_login, wasm_qr

DIGITS = qr_login()["check_code_digits"]


@pytest.mark.parametrize(("raw", "digits"), DIGITS["allow_leading_zero_gen1"])
def test_gen1_digits_follow_allow_leading_zero(raw: str, digits: str) -> None:
    assert CheckCode.allow_leading_zero(bytes.fromhex(raw)).digits == digits


@pytest.mark.parametrize(("raw", "digits"), DIGITS["no_leading_zero_gen2"])
def test_gen2_digits_follow_no_leading_zero(raw: str, digits: str) -> None:
    assert CheckCode.no_leading_zero(bytes.fromhex(raw)).digits == digits


def test_wasm_check_bytes_give_the_digits_wasm_reported() -> None:
    wasm = wasm_qr()["ecies"]
    raw = bytes.fromhex(wasm["check_code_bytes"])
    assert int(CheckCode.allow_leading_zero(raw).digits) == wasm["check_code_to_digit"]
    assert int(CheckCode.no_leading_zero(raw).digits) == wasm["check_code_no_leading_zero"]


def test_raw_bytes_are_kept() -> None:
    assert CheckCode.no_leading_zero(b"\x01\x02").raw == b"\x01\x02"


def test_matches_the_exact_digits() -> None:
    assert CheckCode.allow_leading_zero(b"\x00\x07").matches("07")


def test_matches_ignores_surrounding_whitespace() -> None:
    assert CheckCode.allow_leading_zero(b"\x00\x07").matches(" 07\n")


@pytest.mark.parametrize("entered", ["7", "70", "007", "0 7", "", "\u0660\u0667"])
def test_does_not_match_other_input(entered: str) -> None:
    assert not CheckCode.allow_leading_zero(b"\x00\x07").matches(entered)


def test_codes_with_the_same_digits_from_other_bytes_are_not_equal() -> None:
    # Gen-1 digits are b0 % 10, b1 % 10: bytes 0 and 10 both give 0, bytes 7 and 17 both give 7.
    one, other = CheckCode.allow_leading_zero(b"\x00\x07"), CheckCode.allow_leading_zero(b"\x0a\x11")
    assert one.digits == other.digits
    assert one != other
    assert one == CheckCode.allow_leading_zero(b"\x00\x07")


def test_repr_hides_the_code() -> None:
    assert "07" not in repr(CheckCode.allow_leading_zero(b"\x00\x07"))


def test_wrong_number_of_bytes_is_rejected() -> None:
    with pytest.raises(ValueError):
        CheckCode.no_leading_zero(b"\x01")


def test_element_x_check_bytes_give_the_recorded_digits() -> None:
    # Element X shows the Gen-2 code with vodozemac's NoLeadingZero rule.
    vector = element_x()["hpke"]
    assert CheckCode.no_leading_zero(bytes.fromhex(vector["check_bytes"])).digits == vector["check_code_text"]
