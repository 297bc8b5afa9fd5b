"""Signing and verifying JSON with Ed25519 (spec appendix "Signing JSON")."""

from __future__ import annotations

import base64

import pytest
import vodozemac

from qrlink_client.e2ee import (
    Ed25519SigningKey,
    InvalidKeyMaterial,
    InvalidSignature,
    sign_json,
    signable_bytes,
    verify_json,
)

# The spec appendix "Cryptographic test vectors": seed, signer and key id used for every JSON signing example.
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SIGNER = "domain"
SPEC_KEY_ID = "ed25519:1"


@pytest.fixture
def spec_key() -> Ed25519SigningKey:
    # The spec's seed text ends in non-canonical trailing bits, which the strict project decoder refuses; the
    # stdlib decoder ignores them and yields the 32 bytes every implementation uses for these vectors.
    return Ed25519SigningKey(base64.b64decode(SPEC_SEED + "="))


def test_signing_the_empty_object_gives_the_spec_signature(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    expected = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    assert signed == {"signatures": {"domain": {"ed25519:1": expected}}}


def test_signing_an_object_with_data_gives_the_spec_signature(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def test_unsigned_and_existing_signatures_are_kept_and_not_covered(spec_key: Ed25519SigningKey) -> None:
    original = {"one": 1, "unsigned": {"age": 5}, "signatures": {"other": {"ed25519:x": "sig"}}}
    signed = sign_json(original, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    assert signed["unsigned"] == {"age": 5}
    assert signed["signatures"]["other"] == {"ed25519:x": "sig"}
    assert signable_bytes(signed) == b'{"one":1}'


def test_sign_json_leaves_its_input_unchanged(spec_key: Ed25519SigningKey) -> None:
    original = {"one": 1, "signatures": {"domain": {"ed25519:0": "old"}}}
    sign_json(original, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    assert original == {"one": 1, "signatures": {"domain": {"ed25519:0": "old"}}}


def test_a_signature_survives_changes_to_unsigned(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    signed["unsigned"] = {"added": "later"}
    verify_json(signed, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, public_key=spec_key.public_key_base64)


def test_a_tampered_object_fails_verification(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    signed["one"] = 2
    with pytest.raises(InvalidSignature):
        verify_json(signed, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, public_key=spec_key.public_key)


def test_a_signature_by_another_key_fails_verification(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    other = Ed25519SigningKey.generate()
    with pytest.raises(InvalidSignature):
        verify_json(signed, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, public_key=other.public_key)


def test_a_missing_signature_fails_verification(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    with pytest.raises(InvalidSignature):
        verify_json(signed, signer_id="elsewhere", key_id=SPEC_KEY_ID, public_key=spec_key.public_key)


def test_a_signature_that_is_not_base64_fails_verification(spec_key: Ed25519SigningKey) -> None:
    obj = {"one": 1, "signatures": {SPEC_SIGNER: {SPEC_KEY_ID: "not base64!"}}}
    with pytest.raises(InvalidSignature):
        verify_json(obj, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, public_key=spec_key.public_key)


def test_a_malformed_public_key_is_rejected(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    with pytest.raises(InvalidKeyMaterial):
        verify_json(signed, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, public_key="AAAA")


def test_signatures_verify_with_vodozemac(spec_key: Ed25519SigningKey) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, signer_id=SPEC_SIGNER, key_id=SPEC_KEY_ID, key=spec_key)
    public = vodozemac.Ed25519PublicKey.from_base64(spec_key.public_key_base64)
    signature = vodozemac.Ed25519Signature.from_base64(signed["signatures"][SPEC_SIGNER][SPEC_KEY_ID])
    public.verify_signature(signable_bytes(signed), signature)  # raises on failure


def test_seed_must_be_32_bytes() -> None:
    with pytest.raises(InvalidKeyMaterial):
        Ed25519SigningKey(b"\x00" * 31)


def test_signing_key_repr_shows_only_the_public_key(spec_key: Ed25519SigningKey) -> None:
    text = repr(spec_key)
    assert spec_key.public_key_base64 in text
    assert SPEC_SEED not in text
    assert spec_key.seed_base64() not in text
