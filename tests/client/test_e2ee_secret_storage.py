"""Secret storage (m.secret_storage.v1.aes-hmac-sha2): key check, encryption, decryption, rejection."""

from __future__ import annotations

import pytest

from qrlink_client._b64 import b64decode, b64encode
from qrlink_client.e2ee import (
    EncryptedSecret,
    MalformedSecretStorageData,
    SecretMacMismatch,
    SecretNotFound,
    SecretStorageKey,
    UnsupportedSecretStorageAlgorithm,
    WrongRecoveryKey,
)

# Known-answer vector from matrix-rust-sdk's secret storage tests: a recovery key and the key description
# (written by Element with padded base64) whose check MAC it must satisfy.
KNOWN_RECOVERY_KEY = "EsTj 3yST y93F SLpB jJsz eAXc 2XzA ygD3 w69H fGaN TKBj jXEd"
KNOWN_KEY_ID = "bmur2d9ypPUH1msSwCxQOJkuKRmJI55e"
KNOWN_DESCRIPTION = {
    "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
    "iv": "xv5b6/p3ExEw++wTyfSHEg==",
    "mac": "ujBBbXahnTAMkmPUX2/0+VTfUh63pGyVRuBcDMgmJC8=",
}


def test_known_recovery_key_passes_its_key_description_check() -> None:
    SecretStorageKey.from_recovery_key(KNOWN_RECOVERY_KEY, KNOWN_KEY_ID).check(KNOWN_DESCRIPTION)


def test_another_key_fails_the_known_key_description_check() -> None:
    with pytest.raises(WrongRecoveryKey):
        SecretStorageKey.generate(KNOWN_KEY_ID).check(KNOWN_DESCRIPTION)


def test_a_generated_key_description_checks_with_its_own_key() -> None:
    key = SecretStorageKey.generate()
    key.check(key.key_description())


def test_a_key_description_without_iv_and_mac_is_accepted_unchecked() -> None:
    SecretStorageKey.generate().check({"algorithm": "m.secret_storage.v1.aes-hmac-sha2"})


def test_an_unknown_algorithm_is_rejected() -> None:
    description = dict(KNOWN_DESCRIPTION, algorithm="m.secret_storage.custom")
    with pytest.raises(UnsupportedSecretStorageAlgorithm):
        SecretStorageKey.from_recovery_key(KNOWN_RECOVERY_KEY, KNOWN_KEY_ID).check(description)


@pytest.mark.parametrize(("field", "length"), [("iv", 14), ("mac", 10)])
def test_a_key_description_with_a_wrong_length_field_is_malformed(field: str, length: int) -> None:
    description = dict(KNOWN_DESCRIPTION, **{field: b64encode(bytes(length))})
    with pytest.raises(MalformedSecretStorageData):
        SecretStorageKey.from_recovery_key(KNOWN_RECOVERY_KEY, KNOWN_KEY_ID).check(description)


def test_a_secret_round_trips_through_account_data_content() -> None:
    key = SecretStorageKey.generate()
    content = key.encrypt_secret_content("m.cross_signing.master", "c2VjcmV0IHNlZWQ")
    assert key.decrypt_secret_content("m.cross_signing.master", content) == "c2VjcmV0IHNlZWQ"


def test_account_data_content_is_keyed_by_the_key_id() -> None:
    key = SecretStorageKey.generate("my_key")
    content = key.encrypt_secret_content("name", "value")
    assert list(content["encrypted"]) == ["my_key"]
    assert set(content["encrypted"]["my_key"]) == {"iv", "ciphertext", "mac"}


def test_a_tampered_ciphertext_is_rejected_by_its_mac() -> None:
    key = SecretStorageKey.generate()
    encrypted = key.encrypt("name", b"value")
    tampered = EncryptedSecret(
        iv=encrypted.iv,
        ciphertext=bytes([encrypted.ciphertext[0] ^ 1]) + encrypted.ciphertext[1:],
        mac=encrypted.mac,
    )
    with pytest.raises(SecretMacMismatch):
        key.decrypt("name", tampered)


def test_a_tampered_mac_is_rejected() -> None:
    key = SecretStorageKey.generate()
    encrypted = key.encrypt("name", b"value")
    tampered = EncryptedSecret(iv=encrypted.iv, ciphertext=encrypted.ciphertext, mac=bytes(32))
    with pytest.raises(SecretMacMismatch):
        key.decrypt("name", tampered)


def test_decrypting_with_the_wrong_key_is_rejected() -> None:
    content = SecretStorageKey.generate("same_id").encrypt_secret_content("name", "value")
    with pytest.raises(SecretMacMismatch):
        SecretStorageKey.generate("same_id").decrypt_secret_content("name", content)


def test_decrypting_under_another_secret_name_is_rejected() -> None:
    key = SecretStorageKey.generate()
    content = key.encrypt_secret_content("m.cross_signing.master", "value")
    with pytest.raises(SecretMacMismatch):
        key.decrypt_secret_content("m.cross_signing.self_signing", content)


def test_a_secret_not_encrypted_for_the_key_is_not_found() -> None:
    content = SecretStorageKey.generate("other").encrypt_secret_content("name", "value")
    with pytest.raises(SecretNotFound):
        SecretStorageKey.generate("mine").decrypt_secret_content("name", content)


def test_fresh_ivs_have_bit_63_cleared() -> None:
    key = SecretStorageKey.generate()
    assert all(key.encrypt("name", b"x").iv[8] & 0x80 == 0 for _ in range(64))


def test_a_given_iv_is_used_as_is() -> None:
    key = SecretStorageKey.generate()
    iv = b64decode(KNOWN_DESCRIPTION["iv"])
    assert key.encrypt("name", b"x", iv=iv).iv == iv


def test_encrypted_secret_json_parses_padded_base64() -> None:
    # Encrypted-data vector from matrix-rust-sdk's tests (padded base64, as Element writes it).
    parsed = EncryptedSecret.from_json(
        {
            "iv": "bdfCwu+ECYgZ/jWTkGrQ/A==",
            "ciphertext": "lCRSSA1lChONEXj/8RyogsgAa8ouQwYDnLr4XBCheRikrZykLRzPCx3doCE=",
            "mac": "NXeV1dZaOe2JLvQ6Hh6tFto7AgFFdaQnY0l9pruwdtE=",
        }
    )
    assert parsed.iv == bytes([109, 215, 194, 194, 239, 132, 9, 136, 25, 254, 53, 147, 144, 106, 208, 252])
    assert parsed.mac[:4] == bytes([53, 119, 149, 213])


def test_encrypted_secret_json_with_a_short_mac_is_malformed() -> None:
    with pytest.raises(MalformedSecretStorageData):
        EncryptedSecret.from_json(
            {
                "iv": "bdfCwu+ECYgZ/jWTkGrQ/A==",
                "ciphertext": "lCRSSA1lChONEXj/8RyogsgAa8ouQwYDnLr4XBCheRikrZykLRzPCx3doCE=",
                "mac": "NXeV1dZaOe2JLvQ6Hh6tFtgFFdaQnY0l9pruwdtE",
            }
        )


def test_recovery_key_round_trips_through_the_key() -> None:
    key = SecretStorageKey.generate("id")
    again = SecretStorageKey.from_recovery_key(key.recovery_key(), "id")
    again.check(key.key_description())


def test_key_repr_shows_only_the_key_id() -> None:
    key = SecretStorageKey.from_recovery_key(KNOWN_RECOVERY_KEY, KNOWN_KEY_ID)
    assert repr(key) == f"SecretStorageKey(key_id={KNOWN_KEY_ID!r})"


def test_wrong_key_error_does_not_contain_key_material() -> None:
    key = SecretStorageKey.generate(KNOWN_KEY_ID)
    with pytest.raises(WrongRecoveryKey) as caught:
        key.check(KNOWN_DESCRIPTION)
    assert key.recovery_key().replace(" ", "")[:8] not in str(caught.value).replace(" ", "")


@pytest.mark.parametrize("present", ["iv", "mac"])
def test_a_key_description_with_only_one_of_iv_and_mac_is_malformed(present: str) -> None:
    key = SecretStorageKey.generate()
    description = {"algorithm": "m.secret_storage.v1.aes-hmac-sha2", present: key.key_description()[present]}

    with pytest.raises(MalformedSecretStorageData):
        key.check(description)


def test_fresh_ivs_stay_random_apart_from_bit_63() -> None:
    key = SecretStorageKey.generate()

    eighth_bytes = {key.encrypt("s", b"x").iv[8] for _ in range(16)}

    assert all(byte < 0x80 for byte in eighth_bytes)
    assert len(eighth_bytes) > 1  # 16 draws of 7 random bits are all equal with probability 2**-105


def test_key_description_names_the_key_only_when_given_a_name() -> None:
    key = SecretStorageKey.generate()

    assert key.key_description(name="Recovery key")["name"] == "Recovery key"
    assert "name" not in key.key_description()


def test_generated_key_ids_are_32_letters_and_digits() -> None:
    key_id = SecretStorageKey.generate().key_id

    assert len(key_id) == 32 and key_id.isascii() and key_id.isalnum()


@pytest.mark.parametrize("encrypted", [["not", "a", "mapping"], "text", None])
def test_account_data_whose_encrypted_field_is_not_an_object_has_no_secret(encrypted: object) -> None:
    key = SecretStorageKey.generate()

    with pytest.raises(SecretNotFound):
        key.decrypt_secret_content("m.cross_signing.master", {"encrypted": encrypted})
