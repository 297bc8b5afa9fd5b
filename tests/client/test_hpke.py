"""Gen-2 HPKE channel: RFC 9180 A.2.1, the MSC4388 and Element X vectors for each profile, AAD binding, errors."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qrlink_client._b64 import b64decode, b64encode
from qrlink_client.channel import (
    ChannelStateError,
    DecryptionError,
    HandshakeError,
    HpkeChannel,
    HpkeProfile,
    InvalidAadField,
    InvalidKey,
    MessageDecodeError,
    MissingSequenceToken,
    NonContributoryKey,
    SecureChannel,
    build_aad,
)
from qrlink_client.channel import _hpke_primitives as primitives
from qrlink_client.channel._x25519 import KeyPair
from qrlink_client.channel.hpke import INFO, response_key_material
from qrlink_client.qr import Gen2QrCode, decode_qr

from ._channels import BASE_URL, RENDEZVOUS_ID, hpke_pair
from ._vectors import element_x, qr_login

A21 = qr_login()["rfc9180_a_2_1"]
V = qr_login()["gen2_hpke"]
G_SECRET = bytes.fromhex(V["G_secret"])
S_SECRET = bytes.fromhex(V["S_secret"])
TOKENS = V["tokens"]
PROFILES = [HpkeProfile.MSC, HpkeProfile.VODOZEMAC]


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


# --- RFC 9180 A.2.1 -----------------------------------------------------------------------------------------


def test_rfc9180_a21_encap_gives_shared_secret_and_enc() -> None:
    shared_secret, enc = primitives.encap(_h(A21["pkRm"]), KeyPair(_h(A21["skEm"])))
    assert (shared_secret.hex(), enc.hex()) == (A21["shared_secret"], A21["pkEm"])


def test_rfc9180_a21_decap_gives_shared_secret() -> None:
    assert primitives.decap(_h(A21["pkEm"]), KeyPair(_h(A21["skRm"]))).hex() == A21["shared_secret"]


def test_rfc9180_a21_key_schedule() -> None:
    schedule = primitives.key_schedule_base(_h(A21["shared_secret"]), _h(A21["info"]))
    assert (schedule.key.hex(), schedule.base_nonce.hex(), schedule.exporter_secret.hex()) == (
        A21["key"],
        A21["base_nonce"],
        A21["exporter_secret"],
    )


def test_rfc9180_a21_sender_seals_each_sequence_number() -> None:
    _, sender = primitives.setup_base_sender(_h(A21["pkRm"]), _h(A21["info"]), KeyPair(_h(A21["skEm"])))
    for vector in A21["encryptions"]:
        assert sender.seal(_h(vector["aad"]), _h(vector["pt"])).hex() == vector["ct"]


def test_rfc9180_a21_recipient_opens_each_sequence_number() -> None:
    recipient = primitives.setup_base_recipient(_h(A21["pkEm"]), KeyPair(_h(A21["skRm"])), _h(A21["info"]))
    for vector in A21["encryptions"]:
        assert recipient.open(_h(vector["aad"]), _h(vector["ct"])).hex() == vector["pt"]


@pytest.mark.parametrize(
    ("context", "exported"),
    [
        ("", "4bbd6243b8bb54cec311fac9df81841b6fd61f56538a775e7c80a9f40160606e"),
        ("00", "8c1df14732580e5501b00f82b10a1647b40713191b7c1240ac80e2b68808ba69"),
        ("54657374436f6e74657874", "5acb09211139c43b3090489a9da433e8a30ee7188ba8b0a9a1ccf0c229283e53"),
    ],
)
def test_rfc9180_a21_exported_values(context: str, exported: str) -> None:
    # RFC 9180 A.2.1.1 exported values, L = 32 (not in the vectors file; from the RFC text).
    recipient = primitives.setup_base_recipient(_h(A21["pkEm"]), KeyPair(_h(A21["skRm"])), _h(A21["info"]))
    assert recipient.export(_h(context), 32).hex() == exported


def test_failed_open_does_not_advance_the_sequence_number() -> None:
    recipient = primitives.setup_base_recipient(_h(A21["pkEm"]), KeyPair(_h(A21["skRm"])), _h(A21["info"]))
    first = A21["encryptions"][0]
    with pytest.raises(DecryptionError):
        recipient.open(b"other aad", _h(first["ct"]))
    assert recipient.sequence == 0
    assert recipient.open(_h(first["aad"]), _h(first["ct"])).hex() == first["pt"]


# --- MSC4388 channel vectors --------------------------------------------------------------------------------


def _profile(profile: HpkeProfile) -> dict[str, Any]:
    # The shared vector file names the text's profile by its older name, "msc".
    data: dict[str, Any] = V["profile_msc" if profile is HpkeProfile.MSC else f"profile_{profile.value}"]
    return data


def _vector_channels(profile: HpkeProfile) -> tuple[HpkeChannel, HpkeChannel]:
    return (
        HpkeChannel.generator(V["base_url_text"], V["rendezvous_id_text"], G_SECRET, profile),
        HpkeChannel.scanner(V["base_url_text"], V["rendezvous_id_text"], S_SECRET, profile),
    )


def _handshake(profile: HpkeProfile) -> tuple[HpkeChannel, HpkeChannel]:
    generator, scanner = _vector_channels(profile)
    p = _profile(profile)
    generator.accept_initiate(
        scanner.initiate(generator.public_key, sequence_token=TOKENS["after_POST"]),
        sequence_token=TOKENS["after_POST"],
    )
    ok = generator.ok_message(sequence_token=TOKENS["after_S_PUT_initiate"], response_nonce=_h(p["response_nonce"]))
    scanner.accept_ok(ok, sequence_token=TOKENS["after_S_PUT_initiate"])
    return generator, scanner


def test_public_keys_match_vector() -> None:
    generator, scanner = _vector_channels(HpkeProfile.MSC)
    assert (b64encode(generator.public_key), b64encode(scanner.public_key)) == (
        V["G_public_b64"],
        V["S_public_b64"],
    )


def test_aad_matches_vector() -> None:
    assert build_aad(V["base_url_text"], V["rendezvous_id_text"], "SEQ1").hex() == _profile(HpkeProfile.MSC)["aad_SEQ1"]


@pytest.mark.parametrize("profile", PROFILES)
def test_main_context_key_schedule_matches_vector(profile: HpkeProfile) -> None:
    p = _profile(profile)
    shared_secret = primitives.decap(b64decode(V["S_public_b64"]), KeyPair(G_SECRET))
    schedule = primitives.key_schedule_base(shared_secret, INFO)
    assert (schedule.key.hex(), schedule.base_nonce.hex(), schedule.exporter_secret.hex()) == (
        p["hpke_key"],
        p["hpke_base_nonce"],
        p["hpke_exporter_secret"],
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_response_key_and_nonce_match_vector(profile: HpkeProfile) -> None:
    p = _profile(profile)
    schedule = primitives.key_schedule_base(primitives.decap(b64decode(V["S_public_b64"]), KeyPair(G_SECRET)), INFO)
    secret = schedule.context().export(p["response_export_label_text"].encode(), 32)
    key, nonce = response_key_material(secret, b64decode(V["S_public_b64"]), _h(p["response_nonce"]))
    assert (key.hex(), nonce.hex()) == (p["response_key"], p["response_base_nonce"])


def _independent_response_key_material(secret: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """RFC 9458 §4.4's response key and nonce through ``cryptography``'s HKDF, not our HKDF helpers."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"key").derive(secret)
    nonce = HKDF(algorithm=hashes.SHA256(), length=12, salt=salt, info=b"nonce").derive(secret)
    return key, nonce


def test_response_salt_is_enc_then_response_nonce() -> None:
    # Distinct, non-repeating inputs: any other order, or either part alone, gives another salt.
    secret, enc, response_nonce = bytes(range(32)), bytes(range(32, 64)), bytes(range(64, 96))
    expected = _independent_response_key_material(secret, enc + response_nonce)
    assert response_key_material(secret, enc, response_nonce) == expected
    for wrong_salt in (response_nonce + enc, enc, response_nonce, b""):
        assert _independent_response_key_material(secret, wrong_salt) != expected


@pytest.mark.parametrize("profile", PROFILES)
def test_login_ok_opens_with_a_response_key_derived_independently(profile: HpkeProfile) -> None:
    # The whole response context, end to end: G's LoginOk ciphertext opens under the key and nonce that
    # cryptography's HKDF derives with salt Sp ‖ response_nonce from G's exported response secret.
    g = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, G_SECRET, profile)
    s = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID, None, profile)
    scanner_key = g.accept_initiate(s.initiate(g.public_key, sequence_token="T1"), sequence_token="T1")
    response_nonce = bytes(range(100, 132))
    ok = b64decode(g.ok_message(sequence_token="T2", response_nonce=response_nonce))
    assert ok[:32] == response_nonce
    schedule = primitives.key_schedule_base(primitives.decap(scanner_key, KeyPair(G_SECRET)), INFO)
    secret = schedule.context().export(profile.response_label(), 32)
    key, nonce = _independent_response_key_material(secret, scanner_key + response_nonce)
    aad = build_aad(BASE_URL, RENDEZVOUS_ID, "T2")
    assert ChaCha20Poly1305(key).decrypt(nonce, ok[32:], aad) == b"MATRIX_QR_CODE_LOGIN_OK"


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_labels_match_vector(profile: HpkeProfile) -> None:
    p = _profile(profile)
    assert profile.response_label().decode() == p["response_export_label_text"]
    context = profile.check_code_context(b64decode(V["G_public_b64"]), b64decode(V["S_public_b64"]))
    assert context.hex() == p["check_code_context"]


@pytest.mark.parametrize("profile", PROFILES)
def test_login_initiate_matches_vector(profile: HpkeProfile) -> None:
    generator, scanner = _vector_channels(profile)
    message = scanner.initiate(generator.public_key, sequence_token=TOKENS["after_POST"])
    assert message == _profile(profile)["login_initiate_b64"]


@pytest.mark.parametrize("profile", PROFILES)
def test_accept_initiate_returns_scanner_key_as_enc(profile: HpkeProfile) -> None:
    generator, _ = _vector_channels(profile)
    enc = generator.accept_initiate(_profile(profile)["login_initiate_b64"], sequence_token=TOKENS["after_POST"])
    assert b64encode(enc) == V["S_public_b64"]


@pytest.mark.parametrize("profile", PROFILES)
def test_login_ok_matches_vector(profile: HpkeProfile) -> None:
    p = _profile(profile)
    generator, _ = _vector_channels(profile)
    generator.accept_initiate(p["login_initiate_b64"], sequence_token=TOKENS["after_POST"])
    ok = generator.ok_message(sequence_token=TOKENS["after_S_PUT_initiate"], response_nonce=_h(p["response_nonce"]))
    assert ok == p["login_ok_b64"]


@pytest.mark.parametrize("profile", PROFILES)
def test_check_code_matches_vector_on_both_sides(profile: HpkeProfile) -> None:
    p = _profile(profile)
    generator, scanner = _handshake(profile)
    assert generator.check_code.digits == scanner.check_code.digits == p["check_code_text"]
    assert generator.check_code.raw.hex() == p["check_bytes"]


@pytest.mark.parametrize("profile", PROFILES)
def test_later_messages_match_vector_in_both_directions(profile: HpkeProfile) -> None:
    p = _profile(profile)
    generator, scanner = _handshake(profile)
    g_msg, s_msg = p["G_message_1"], p["S_message_1"]
    g_wire = generator.encrypt(g_msg["plaintext_text"].encode(), sequence_token=g_msg["aad_token_text"])
    s_wire = scanner.encrypt(s_msg["plaintext_text"].encode(), sequence_token=s_msg["aad_token_text"])
    assert (g_wire, s_wire) == (g_msg["wire_b64"], s_msg["wire_b64"])
    assert scanner.decrypt(g_wire, sequence_token=g_msg["aad_token_text"]) == g_msg["plaintext_text"].encode()
    assert generator.decrypt(s_wire, sequence_token=s_msg["aad_token_text"]) == s_msg["plaintext_text"].encode()


# --- Element X vectors (element-x-vectors.json) -------------------------------------------------------------

EX = element_x()["hpke"]
EX_CASES = ["root_base_url", "path_base_url"]


def _ex_token(step: str) -> str:
    token: str = EX["tokens"][EX["token_use"][step]]
    return token


def _ex_channels(case: str) -> tuple[HpkeChannel, HpkeChannel]:
    # S takes everything from the QR it scanned, the profile included.
    code = decode_qr(_h(EX[case]["qr_hex"]))
    assert isinstance(code, Gen2QrCode)
    profile = HpkeProfile.parse(code.layout.value)
    return (
        HpkeChannel.generator(EX[case]["base_url_text"], EX["rendezvous_id_text"], _h(EX["G_secret"]), profile),
        HpkeChannel.scanner(code.base_url, code.rendezvous_id, _h(EX["S_secret"]), profile),
    )


def _ex_handshake(case: str) -> tuple[HpkeChannel, HpkeChannel]:
    generator, scanner = _ex_channels(case)
    initiate = scanner.initiate(generator.public_key, sequence_token=_ex_token("login_initiate"))
    generator.accept_initiate(initiate, sequence_token=_ex_token("login_initiate"))
    ok = generator.ok_message(sequence_token=_ex_token("login_ok"), response_nonce=_h(EX["response_nonce"]))
    scanner.accept_ok(ok, sequence_token=_ex_token("login_ok"))
    return generator, scanner


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_qr_selects_the_element_x_profile(case: str) -> None:
    generator, scanner = _ex_channels(case)
    assert generator.profile is scanner.profile is HpkeProfile.ELEMENT_X
    assert (b64encode(generator.public_key), b64encode(scanner.public_key)) == (
        EX["G_public_b64"],
        EX["S_public_b64"],
    )


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_aad_matches_vector_on_both_sides(case: str) -> None:
    generator, scanner = _ex_channels(case)
    serialised = EX[case]["aad_base_url_text"].encode()
    for token, aad in EX[case]["aad"].items():
        assert generator.aad(token).hex() == scanner.aad(token).hex() == aad
        assert _h(aad)[:2] == len(serialised).to_bytes(2, "big")
        assert _h(aad)[2 : 2 + len(serialised)] == serialised


def test_element_x_main_context_and_response_context_match_vector() -> None:
    schedule = primitives.key_schedule_base(
        primitives.decap(b64decode(EX["S_public_b64"]), KeyPair(_h(EX["G_secret"]))), INFO
    )
    assert (schedule.key.hex(), schedule.base_nonce.hex(), schedule.exporter_secret.hex()) == (
        EX["hpke_key"],
        EX["hpke_base_nonce"],
        EX["hpke_exporter_secret"],
    )
    assert HpkeProfile.ELEMENT_X.response_label().decode() == EX["response_export_label_text"]
    secret = schedule.context().export(HpkeProfile.ELEMENT_X.response_label(), 32)
    key, nonce = response_key_material(secret, b64decode(EX["S_public_b64"]), _h(EX["response_nonce"]))
    assert (secret.hex(), key.hex(), nonce.hex()) == (
        EX["response_secret"],
        EX["response_key"],
        EX["response_base_nonce"],
    )


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_handshake_matches_vector(case: str) -> None:
    generator, scanner = _ex_channels(case)
    initiate = scanner.initiate(generator.public_key, sequence_token=_ex_token("login_initiate"))
    assert initiate == EX[case]["login_initiate_b64"]
    assert (
        b64encode(generator.accept_initiate(initiate, sequence_token=_ex_token("login_initiate")))
        == (EX["S_public_b64"])
    )
    ok = generator.ok_message(sequence_token=_ex_token("login_ok"), response_nonce=_h(EX["response_nonce"]))
    assert ok == EX[case]["login_ok_b64"]
    scanner.accept_ok(ok, sequence_token=_ex_token("login_ok"))


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_check_code_matches_vector_on_both_sides(case: str) -> None:
    generator, scanner = _ex_handshake(case)
    context = HpkeProfile.ELEMENT_X.check_code_context(generator.public_key, scanner.public_key)
    assert context.decode() == EX["check_code_context_text"]
    assert generator.check_code.raw.hex() == scanner.check_code.raw.hex() == EX["check_bytes"]
    assert generator.check_code.digits == scanner.check_code.digits == EX["check_code_text"]


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_later_messages_match_vector_in_both_directions(case: str) -> None:
    generator, scanner = _ex_handshake(case)
    g_plain, s_plain = EX["G_message_1_plaintext_text"].encode(), EX["S_message_1_plaintext_text"].encode()
    g_wire = generator.encrypt(g_plain, sequence_token=_ex_token("G_message_1"))
    assert g_wire == EX[case]["G_message_1_b64"]
    assert scanner.decrypt(g_wire, sequence_token=_ex_token("G_message_1")) == g_plain
    s_wire = scanner.encrypt(s_plain, sequence_token=_ex_token("S_message_1"))
    assert s_wire == EX[case]["S_message_1_b64"]
    assert generator.decrypt(s_wire, sequence_token=_ex_token("S_message_1")) == s_plain


@pytest.mark.parametrize("case", EX_CASES)
def test_element_x_vectors_do_not_open_under_the_vodozemac_profile(case: str) -> None:
    # Same labels, so only the AAD tells the two apart: the u16 length and the serialised URL must matter.
    generator = HpkeChannel.generator(
        EX[case]["base_url_text"], EX["rendezvous_id_text"], _h(EX["G_secret"]), HpkeProfile.VODOZEMAC
    )
    with pytest.raises(DecryptionError):
        generator.accept_initiate(EX[case]["login_initiate_b64"], sequence_token=_ex_token("login_initiate"))


def test_channels_satisfy_the_secure_channel_interface() -> None:
    channel: SecureChannel = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID)
    assert channel.public_key == channel.public_key


# --- AAD binding --------------------------------------------------------------------------------------------


def test_message_opened_with_another_token_is_rejected() -> None:
    generator, scanner = hpke_pair()
    message = scanner.encrypt(b"hi", sequence_token="T3")
    with pytest.raises(DecryptionError):
        generator.decrypt(message, sequence_token="T4")


def test_wrong_token_does_not_consume_the_sequence_number() -> None:
    generator, scanner = hpke_pair()
    message = scanner.encrypt(b"hi", sequence_token="T3")
    with pytest.raises(DecryptionError):
        generator.decrypt(message, sequence_token="T4")
    assert generator.decrypt(message, sequence_token="T3") == b"hi"


def test_base_url_slash_difference_breaks_the_handshake() -> None:
    # The AAD carries the base URL exactly as in the QR code; "…org" and "…org/" are different rendezvous.
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID)
    scanner = HpkeChannel.scanner(BASE_URL + "/", RENDEZVOUS_ID)
    with pytest.raises(DecryptionError):
        generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")


def test_other_rendezvous_id_breaks_the_handshake() -> None:
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID)
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID + "x")
    with pytest.raises(DecryptionError):
        generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")


def test_profile_mismatch_fails_at_login_ok() -> None:
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.MSC)
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.VODOZEMAC)
    generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")
    with pytest.raises(DecryptionError):
        scanner.accept_ok(generator.ok_message(sequence_token="T2"), sequence_token="T2")


@pytest.mark.parametrize("operation", ["initiate", "accept_initiate", "ok_message", "accept_ok", "encrypt", "decrypt"])
def test_missing_sequence_token_is_named_error(operation: str) -> None:
    generator, scanner = (
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID),
        HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID),
    )
    with pytest.raises(MissingSequenceToken):
        if operation == "initiate":
            scanner.initiate(generator.public_key)
        initiate = scanner.initiate(generator.public_key, sequence_token="T1")
        if operation == "accept_initiate":
            generator.accept_initiate(initiate)
        generator.accept_initiate(initiate, sequence_token="T1")
        if operation == "ok_message":
            generator.ok_message()
        ok = generator.ok_message(sequence_token="T2")
        if operation == "accept_ok":
            scanner.accept_ok(ok)
        scanner.accept_ok(ok, sequence_token="T2")
        if operation == "encrypt":
            scanner.encrypt(b"x")
        generator.decrypt(scanner.encrypt(b"x", sequence_token="T3"))


def test_sequence_token_over_255_bytes_is_invalid_aad_field() -> None:
    generator, _ = hpke_pair()
    with pytest.raises(InvalidAadField):
        generator.encrypt(b"x", sequence_token="t" * 256)


def test_sequence_token_of_exactly_255_bytes_fits_the_aad() -> None:
    generator, scanner = hpke_pair()
    token = "t" * 255
    assert build_aad(BASE_URL, RENDEZVOUS_ID, token).endswith(b"\xff" + token.encode())
    assert generator.decrypt(scanner.encrypt(b"x", sequence_token=token), sequence_token=token) == b"x"


def test_base_url_of_exactly_255_bytes_fits_the_aad() -> None:
    base_url = "https://h/" + "p" * 245
    assert build_aad(base_url, RENDEZVOUS_ID, "1").startswith(b"\xff" + base_url.encode())
    HpkeChannel.generator(base_url, RENDEZVOUS_ID)


@pytest.mark.parametrize(("key_length", "nonce_length"), [(31, 12), (33, 12), (32, 11), (32, 13)])
def test_context_refuses_a_key_or_base_nonce_of_the_wrong_length(key_length: int, nonce_length: int) -> None:
    with pytest.raises(ValueError):
        primitives.Context(bytes(key_length), bytes(nonce_length), exporter_secret=None)


def test_base_url_over_255_bytes_is_invalid_aad_field() -> None:
    with pytest.raises(InvalidAadField):
        HpkeChannel.generator("https://h/" + "p" * 250, RENDEZVOUS_ID)


# --- profiles: names and the element-x AAD ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("msc", HpkeProfile.MSC),
        ("msc4388", HpkeProfile.MSC),
        ("vodozemac", HpkeProfile.VODOZEMAC),
        ("element-x", HpkeProfile.ELEMENT_X),
    ],
)
def test_profile_names_parse(name: str, profile: HpkeProfile) -> None:
    assert HpkeProfile.parse(name) is profile
    assert HpkeProfile(name) is profile


def test_unknown_profile_name_is_value_error() -> None:
    with pytest.raises(ValueError):
        HpkeProfile.parse("element_x")


def test_element_x_uses_vodozemac_labels() -> None:
    g, s = b64decode(V["G_public_b64"]), b64decode(V["S_public_b64"])
    assert HpkeProfile.ELEMENT_X.response_label() == HpkeProfile.VODOZEMAC.response_label()
    assert HpkeProfile.ELEMENT_X.check_code_context(g, s) == HpkeProfile.VODOZEMAC.check_code_context(g, s)


@pytest.mark.parametrize(
    ("base_url", "aad_url"),
    [
        ("https://matrix-client.matrix.org", b"https://matrix-client.matrix.org/"),
        ("https://matrix-client.matrix.org/", b"https://matrix-client.matrix.org/"),
        ("HTTPS://Example.org:443/matrix", b"https://example.org/matrix"),
    ],
)
def test_element_x_aad_is_u16_length_and_serialised_base_url(base_url: str, aad_url: bytes) -> None:
    aad = build_aad(base_url, "ab", "SEQ1", HpkeProfile.ELEMENT_X)
    assert aad == len(aad_url).to_bytes(2, "big") + aad_url + b"\x02ab\x04SEQ1"


@pytest.mark.parametrize("profile", [HpkeProfile.MSC, HpkeProfile.VODOZEMAC])
def test_text_aad_is_u8_length_and_exact_base_url(profile: HpkeProfile) -> None:
    assert build_aad("https://h", "ab", "SEQ1", profile) == b"\x09https://h\x02ab\x04SEQ1"
    assert build_aad("https://h", "ab", "SEQ1") == build_aad("https://h", "ab", "SEQ1", profile)


def test_channel_aad_follows_its_profile() -> None:
    channel = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)
    assert channel.aad("SEQ1") == build_aad(BASE_URL, RENDEZVOUS_ID, "SEQ1", HpkeProfile.ELEMENT_X)
    assert channel.base_url == BASE_URL


def test_element_x_base_url_may_exceed_255_bytes() -> None:
    long_url = "https://h/" + "p" * 300
    generator, scanner = (
        HpkeChannel.generator(long_url, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X),
        HpkeChannel.scanner(long_url, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X),
    )
    generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")
    assert generator.aad("T1")[:2] == (len(long_url)).to_bytes(2, "big")


def test_element_x_base_url_over_65535_bytes_is_invalid_aad_field() -> None:
    with pytest.raises(InvalidAadField):
        HpkeChannel.generator("https://h/" + "p" * 65530, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)


@pytest.mark.parametrize("base_url", ["matrix.org", "https://bücher.example"])
def test_element_x_base_url_that_cannot_be_serialised_is_invalid_aad_field(base_url: str) -> None:
    with pytest.raises(InvalidAadField):
        HpkeChannel.scanner(base_url, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)


def test_element_x_binds_the_serialisation_so_a_root_slash_does_not_matter() -> None:
    # G writes "…org" into the QR; Element X as S parses it into "…org/". Both bind "…org/".
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)
    scanner = HpkeChannel.scanner(BASE_URL + "/", RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)
    generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")
    scanner.accept_ok(generator.ok_message(sequence_token="T2"), sequence_token="T2")
    assert generator.check_code == scanner.check_code


def test_element_x_and_vodozemac_profiles_differ_in_the_aad() -> None:
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.VODOZEMAC)
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID, profile=HpkeProfile.ELEMENT_X)
    with pytest.raises(DecryptionError):
        generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")


def test_element_x_pair_exchanges_messages() -> None:
    generator, scanner = hpke_pair(profile=HpkeProfile.ELEMENT_X)
    assert generator.decrypt(scanner.encrypt(b"hi", sequence_token="T3"), sequence_token="T3") == b"hi"
    assert scanner.decrypt(generator.encrypt(b"yo", sequence_token="T4"), sequence_token="T4") == b"yo"
    assert generator.check_code == scanner.check_code


# --- handshake rules and ordering ---------------------------------------------------------------------------


def test_wrong_initiate_plaintext_is_handshake_error() -> None:
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID)
    enc, sender = primitives.setup_base_sender(generator.public_key, INFO, KeyPair())
    forged = b64encode(enc + sender.seal(build_aad(BASE_URL, RENDEZVOUS_ID, "T1"), b"MATRIX_QR_CODE_LOGIN_INITIATX"))
    with pytest.raises(HandshakeError):
        generator.accept_initiate(forged, sequence_token="T1")


def test_initiate_to_low_order_key_is_non_contributory() -> None:
    with pytest.raises(NonContributoryKey):
        HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID).initiate(bytes(32), sequence_token="T1")


def test_initiate_message_with_low_order_enc_is_non_contributory() -> None:
    with pytest.raises(NonContributoryKey):
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID).accept_initiate(b64encode(bytes(80)), sequence_token="T1")


def test_replayed_message_is_rejected() -> None:
    generator, scanner = hpke_pair()
    message = generator.encrypt(b"one", sequence_token="T3")
    scanner.decrypt(message, sequence_token="T3")
    with pytest.raises(DecryptionError):
        scanner.decrypt(message, sequence_token="T3")


def test_out_of_order_message_is_rejected_then_in_order_delivery_works() -> None:
    generator, scanner = hpke_pair()
    first = scanner.encrypt(b"one", sequence_token="T3")
    second = scanner.encrypt(b"two", sequence_token="T3")
    with pytest.raises(DecryptionError):
        generator.decrypt(second, sequence_token="T3")
    assert generator.decrypt(first, sequence_token="T3") == b"one"
    assert generator.decrypt(second, sequence_token="T3") == b"two"


def test_tampered_message_is_rejected() -> None:
    generator, scanner = hpke_pair()
    raw = bytearray(b64decode(scanner.encrypt(b"payload", sequence_token="T3")))
    raw[-1] ^= 0x80
    with pytest.raises(DecryptionError):
        generator.decrypt(b64encode(bytes(raw)), sequence_token="T3")


@pytest.mark.parametrize("message", ["", b64encode(bytes(47)), "*" * 80], ids=["empty", "short", "bad base64"])
def test_malformed_initiate_is_message_decode_error(message: str) -> None:
    with pytest.raises(MessageDecodeError):
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID).accept_initiate(message, sequence_token="T1")


def test_short_login_ok_is_message_decode_error() -> None:
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID)
    scanner.initiate(KeyPair().public_key, sequence_token="T1")
    with pytest.raises(MessageDecodeError):
        scanner.accept_ok(b64encode(bytes(47)), sequence_token="T2")


def test_response_nonce_of_wrong_length_is_invalid_key() -> None:
    generator = HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID)
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID)
    generator.accept_initiate(scanner.initiate(generator.public_key, sequence_token="T1"), sequence_token="T1")
    with pytest.raises(InvalidKey):
        generator.ok_message(sequence_token="T2", response_nonce=bytes(16))


def test_response_context_refuses_to_export() -> None:
    context = primitives.Context(bytes(32), bytes(12), exporter_secret=None)
    with pytest.raises(ChannelStateError):
        context.export(b"anything", 32)


def test_scanner_check_code_is_unavailable_before_login_ok() -> None:
    scanner = HpkeChannel.scanner(BASE_URL, RENDEZVOUS_ID)
    scanner.initiate(KeyPair().public_key, sequence_token="T1")
    with pytest.raises(ChannelStateError):
        _ = scanner.check_code


def test_decrypt_before_established_is_state_error() -> None:
    with pytest.raises(ChannelStateError):
        HpkeChannel.generator(BASE_URL, RENDEZVOUS_ID).decrypt("AAAA", sequence_token="T1")


# --- secrecy ------------------------------------------------------------------------------------------------


def test_repr_shows_no_secret_material() -> None:
    generator, scanner = _handshake(HpkeProfile.MSC)
    text = repr(generator) + repr(scanner) + repr(generator._send) + repr(generator._key_pair)
    secrets = [G_SECRET, S_SECRET] + [_h(_profile(HpkeProfile.MSC)[k]) for k in ("hpke_key", "response_key")]
    for secret in secrets:
        assert secret.hex() not in text
        assert b64encode(secret) not in text


def test_the_texts_profile_is_called_msc4388() -> None:
    assert HpkeProfile.MSC.value == "msc4388"
    assert sorted(p.value for p in HpkeProfile) == ["element-x", "msc4388", "vodozemac"]


@pytest.mark.parametrize(
    ("layout", "profile"),
    [("element-x", HpkeProfile.ELEMENT_X), ("msc4388", HpkeProfile.MSC), ("legacy-u16", None)],
)
def test_each_layout_a_client_writes_implies_its_profile(layout: str, profile: HpkeProfile | None) -> None:
    from qrlink_client.qr import Gen2Layout

    assert HpkeProfile.for_layout(Gen2Layout(layout).value) is profile
