"""Unpadded standard base64 with vodozemac's padding-indifferent decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrlink_client._b64 import InvalidBase64, b64decode, b64encode


def test_encoding_is_standard_alphabet_without_padding() -> None:
    assert b64encode(b"\xfb\xff") == "+/8"


def test_unpadded_text_decodes() -> None:
    assert b64decode("+/8") == b"\xfb\xff"


def test_canonically_padded_text_decodes() -> None:
    assert b64decode("+/8=") == b"\xfb\xff"


@pytest.mark.parametrize(
    "text",
    ["+/8==", "+/=8", "-_8", "+/9", "A", "AA A", "é", "AAA=\n"],
    ids=[
        "extra padding",
        "inner padding",
        "url-safe alphabet",
        "non-canonical bits",
        "impossible length",
        "whitespace",
        "non-ascii",
        "trailing newline",
    ],
)
def test_invalid_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidBase64):
        b64decode(text)


@given(st.binary(max_size=200))
def test_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data


@given(st.text(max_size=100))
def test_arbitrary_text_raises_only_invalid_base64(text: str) -> None:
    try:
        b64decode(text)
    except InvalidBase64:
        pass
