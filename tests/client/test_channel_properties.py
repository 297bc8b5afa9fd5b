"""Property tests over both channels: hostile input, round trips, tampering and secrecy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlink_client._b64 import b64decode, b64encode
from qrlink_client.channel import (
    ChannelError,
    DecryptionError,
    EciesChannel,
    HpkeChannel,
    HpkeProfile,
    MessageDecodeError,
)

from ._channels import BASE_URL, RENDEZVOUS_ID, ecies_pair, hpke_pair

Pair = tuple[EciesChannel, EciesChannel] | tuple[HpkeChannel, HpkeChannel]
TOKEN = "T3"

keys = st.binary(min_size=32, max_size=32)
hostile_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=200).map(b64encode),
    st.tuples(st.binary(max_size=80), st.binary(max_size=40)).map(lambda t: f"{b64encode(t[0])}|{b64encode(t[1])}"),
)
PAIRS: dict[str, Callable[[], Pair]] = {
    "ecies": ecies_pair,
    "hpke-msc": lambda: hpke_pair(profile=HpkeProfile.MSC),
    "hpke-vodozemac": lambda: hpke_pair(profile=HpkeProfile.VODOZEMAC),
    "hpke-element-x": lambda: hpke_pair(profile=HpkeProfile.ELEMENT_X),
}
_pair_param = pytest.mark.parametrize("make_pair", PAIRS.values(), ids=PAIRS.keys())


@given(hostile_text)
def test_ecies_accept_initiate_raises_only_channel_errors(message: str) -> None:
    try:
        EciesChannel.generator().accept_initiate(message)
    except ChannelError:
        pass


@given(hostile_text)
def test_hpke_accept_initiate_raises_only_channel_errors(message: str) -> None:
    try:
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID).accept_initiate(message, sequence_token="T1")
    except ChannelError:
        pass


@given(hostile_text)
def test_ecies_accept_ok_raises_only_channel_errors(message: str) -> None:
    scanner = EciesChannel.scanner()
    scanner.initiate(EciesChannel.generator().public_key)
    try:
        scanner.accept_ok(message)
    except ChannelError:
        pass


@given(hostile_text)
def test_hpke_accept_ok_raises_only_channel_errors(message: str) -> None:
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID)
    scanner.initiate(HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID).public_key, sequence_token="T1")
    try:
        scanner.accept_ok(message, sequence_token="T2")
    except ChannelError:
        pass


@_pair_param
@given(message=hostile_text)
def test_decrypt_raises_only_channel_errors(make_pair: Callable[[], Pair], message: str) -> None:
    generator, scanner = make_pair()
    for channel in (generator, scanner):
        try:
            channel.decrypt(message, sequence_token=TOKEN)
        except ChannelError:
            pass


@_pair_param
@settings(max_examples=30)
@given(messages=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8))
def test_any_sequence_of_messages_round_trips(
    make_pair: Callable[[], Pair], messages: list[tuple[bool, bytes]]
) -> None:
    generator, scanner = make_pair()
    for from_scanner, plaintext in messages:
        sender, receiver = (scanner, generator) if from_scanner else (generator, scanner)
        wire = sender.encrypt(plaintext, sequence_token=TOKEN)
        assert receiver.decrypt(wire, sequence_token=TOKEN) == plaintext


@_pair_param
@settings(max_examples=40)
@given(plaintext=st.binary(max_size=100), data=st.data())
def test_any_single_bit_flip_is_rejected_without_consuming_the_message(
    make_pair: Callable[[], Pair], plaintext: bytes, data: st.DataObject
) -> None:
    generator, scanner = make_pair()
    wire = scanner.encrypt(plaintext, sequence_token=TOKEN)
    raw = bytearray(b64decode(wire))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((DecryptionError, MessageDecodeError)):
        generator.decrypt(b64encode(bytes(raw)), sequence_token=TOKEN)
    assert generator.decrypt(wire, sequence_token=TOKEN) == plaintext


@settings(max_examples=25)
@given(g_secret=keys, s_secret=keys)
def test_ecies_both_sides_derive_the_same_check_code(g_secret: bytes, s_secret: bytes) -> None:
    generator, scanner = ecies_pair(g_secret, s_secret)
    assert generator.check_code == scanner.check_code


@settings(max_examples=25)
@given(g_secret=keys, s_secret=keys, profile=st.sampled_from(HpkeProfile))
def test_hpke_check_code_agrees_and_never_starts_with_zero(
    g_secret: bytes, s_secret: bytes, profile: HpkeProfile
) -> None:
    generator, scanner = hpke_pair(g_secret, s_secret, profile)
    assert generator.check_code == scanner.check_code
    assert 10 <= int(scanner.check_code.digits) <= 99


@settings(max_examples=25)
@given(g_secret=keys, s_secret=keys)
def test_no_repr_contains_secret_keys(g_secret: bytes, s_secret: bytes) -> None:
    texts = []
    for generator, scanner in (ecies_pair(g_secret, s_secret), hpke_pair(g_secret, s_secret)):
        texts += [repr(generator), repr(scanner), str(generator), str(scanner), repr(scanner.check_code)]
    joined = "".join(texts)
    for secret in (g_secret, s_secret):
        assert secret.hex() not in joined
        assert b64encode(secret) not in joined
