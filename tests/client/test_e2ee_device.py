"""The new device's Olm account, its device keys (self- and SSK-signed), one-time keys and pickle."""

from __future__ import annotations

import secrets

import pytest
import vodozemac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from qrlink_client._b64 import b64decode
from qrlink_client.e2ee import (
    DEVICE_ALGORITHMS,
    CrossSigningKeys,
    InvalidKeyMaterial,
    OlmDevice,
    signable_bytes,
    verify_json,
)

USER = "@alice:example.org"


@pytest.fixture
def device() -> OlmDevice:
    return OlmDevice.generate("NEWDEVICE")


@pytest.fixture
def cross_signing() -> CrossSigningKeys:
    return CrossSigningKeys.generate()


def vodozemac_verify(obj: dict[str, object], public_key_b64: str, signature_b64: str) -> None:
    """Verify with vodozemac's Ed25519 implementation (raises on failure)."""
    vodozemac.Ed25519PublicKey.from_base64(public_key_b64).verify_signature(
        signable_bytes(obj), vodozemac.Ed25519Signature.from_base64(signature_b64)
    )


def test_device_keys_have_the_spec_fields(device: OlmDevice) -> None:
    keys = device.device_keys(USER)
    assert keys["user_id"] == USER
    assert keys["device_id"] == "NEWDEVICE"
    assert keys["algorithms"] == ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]
    assert keys["keys"] == {
        "curve25519:NEWDEVICE": device.account.curve25519_key.to_base64(),
        "ed25519:NEWDEVICE": device.account.ed25519_key.to_base64(),
    }


def test_device_algorithms_constant_lists_olm_and_megolm() -> None:
    assert DEVICE_ALGORITHMS == ("m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2")


def test_device_self_signature_verifies_with_vodozemac(device: OlmDevice) -> None:
    keys = device.device_keys(USER)
    vodozemac_verify(keys, device.ed25519_key, keys["signatures"][USER]["ed25519:NEWDEVICE"])


def test_device_self_signature_verifies_with_cryptography(device: OlmDevice) -> None:
    keys = device.device_keys(USER)
    signature = b64decode(keys["signatures"][USER]["ed25519:NEWDEVICE"])
    Ed25519PublicKey.from_public_bytes(b64decode(device.ed25519_key)).verify(signature, signable_bytes(keys))


def test_ssk_signature_is_under_the_ssk_public_key_id(device: OlmDevice, cross_signing: CrossSigningKeys) -> None:
    keys = device.device_keys(USER, cross_signing)
    ssk = cross_signing.self_signing_key
    assert set(keys["signatures"][USER]) == {"ed25519:NEWDEVICE", f"ed25519:{ssk.public_key_base64}"}


def test_ssk_signature_verifies_with_vodozemac(device: OlmDevice, cross_signing: CrossSigningKeys) -> None:
    keys = device.device_keys(USER, cross_signing)
    ssk = cross_signing.self_signing_key
    vodozemac_verify(keys, ssk.public_key_base64, keys["signatures"][USER][ssk.key_id])


def test_ssk_signature_verifies_with_cryptography(device: OlmDevice, cross_signing: CrossSigningKeys) -> None:
    keys = device.device_keys(USER, cross_signing)
    ssk = cross_signing.self_signing_key
    verify_json(keys, signer_id=USER, key_id=ssk.key_id, public_key=ssk.public_key)


def test_device_self_signature_still_verifies_after_ssk_signing(
    device: OlmDevice, cross_signing: CrossSigningKeys
) -> None:
    keys = device.device_keys(USER, cross_signing)
    verify_json(keys, signer_id=USER, key_id=device.key_id, public_key=device.ed25519_key)


def test_default_device_id_is_the_curve25519_identity_key() -> None:
    device = OlmDevice.generate()
    assert device.device_id == device.curve25519_key


def test_one_time_keys_are_signed_curve25519_objects(device: OlmDevice) -> None:
    otks = device.generate_one_time_keys(USER, 5)
    assert len(otks) == 5
    for key_id, key_object in otks.items():
        assert key_id.startswith("signed_curve25519:")
        assert set(key_object) == {"key", "signatures"}
        vodozemac_verify(key_object, device.ed25519_key, key_object["signatures"][USER]["ed25519:NEWDEVICE"])


def test_upload_body_holds_device_keys_and_one_time_keys(device: OlmDevice, cross_signing: CrossSigningKeys) -> None:
    body = device.keys_upload_body(USER, cross_signing, one_time_keys=3)
    assert body["device_keys"] == device.device_keys(USER, cross_signing)
    assert len(body["one_time_keys"]) == 3


def test_published_one_time_keys_are_not_uploaded_again(device: OlmDevice) -> None:
    first = device.keys_upload_body(USER, one_time_keys=3)
    device.mark_keys_as_published()
    second = device.keys_upload_body(USER, one_time_keys=2)
    assert len(second["one_time_keys"]) == 2
    assert not set(first["one_time_keys"]) & set(second["one_time_keys"])


def test_upload_body_without_one_time_keys_omits_the_member(device: OlmDevice) -> None:
    assert "one_time_keys" not in device.keys_upload_body(USER, one_time_keys=0)


def test_too_many_one_time_keys_are_refused(device: OlmDevice) -> None:
    with pytest.raises(ValueError):
        device.generate_one_time_keys(USER, device.account.max_number_of_one_time_keys + 1)


def test_pickle_round_trip_keeps_the_identity(device: OlmDevice) -> None:
    pickle_key = secrets.token_bytes(32)
    restored = OlmDevice.from_pickle(device.pickle(pickle_key), pickle_key, device_id=device.device_id)
    assert (restored.curve25519_key, restored.ed25519_key) == (device.curve25519_key, device.ed25519_key)


def test_pickle_with_the_wrong_key_is_refused(device: OlmDevice) -> None:
    pickled = device.pickle(secrets.token_bytes(32))
    with pytest.raises(InvalidKeyMaterial):
        OlmDevice.from_pickle(pickled, secrets.token_bytes(32), device_id=device.device_id)


def test_pickle_key_must_be_32_bytes(device: OlmDevice) -> None:
    with pytest.raises(InvalidKeyMaterial):
        device.pickle(b"short")


def test_repr_shows_public_identity_only(device: OlmDevice) -> None:
    text = repr(device)
    assert device.curve25519_key in text
    assert device.device_id in text
    assert "pickle" not in text.lower()
