"""m.login.secrets: serialising, parsing, and checking the secrets against the homeserver's published keys."""

from __future__ import annotations

from typing import Any

import pytest
import vodozemac

from qrlink_client.e2ee import (
    CROSS_SIGNING_KEY_NAMES,
    MEGOLM_BACKUP_ALGORITHM,
    BackupKey,
    BackupSecret,
    CrossSigningKeys,
    Ed25519SigningKey,
    InvalidSecretsBundle,
    SecretsBundle,
    SecretsMismatch,
    verify_json,
)

USER = "@alice:example.org"


@pytest.fixture
def bundle() -> SecretsBundle:
    return SecretsBundle(
        cross_signing=CrossSigningKeys.generate(),
        backup=BackupSecret(key=BackupKey.generate(), backup_version="3"),
    )


def keys_query_for(keys: CrossSigningKeys) -> dict[str, Any]:
    """A /keys/query response publishing ``keys`` for USER, shaped as the homeserver sends it."""
    body = keys.device_signing_upload_body(USER)
    return {
        "device_keys": {USER: {}},
        "master_keys": {USER: body["master_key"]},
        "self_signing_keys": {USER: body["self_signing_key"]},
        "user_signing_keys": {USER: body["user_signing_key"]},
    }


def backup_version_for(backup: BackupSecret) -> dict[str, Any]:
    """A GET /room_keys/version response for ``backup``."""
    return {
        "algorithm": MEGOLM_BACKUP_ALGORITHM,
        "auth_data": {"public_key": backup.key.public_key_base64},
        "version": backup.backup_version,
        "count": 0,
        "etag": "0",
    }


# --- serialisation ---


def test_content_has_the_protocol_shape(bundle: SecretsBundle) -> None:
    content = bundle.to_content()
    assert set(content) == {"cross_signing", "backup"}
    assert set(content["cross_signing"]) == set(CROSS_SIGNING_KEY_NAMES)
    assert content["backup"]["algorithm"] == MEGOLM_BACKUP_ALGORITHM
    assert content["backup"]["backup_version"] == "3"
    assert all(len(seed) == 43 and not seed.endswith("=") for seed in content["cross_signing"].values())


def test_content_round_trips(bundle: SecretsBundle) -> None:
    parsed = SecretsBundle.from_content(bundle.to_content())
    assert parsed.to_content() == bundle.to_content()


def test_a_bundle_without_backup_omits_the_member() -> None:
    content = SecretsBundle(cross_signing=CrossSigningKeys.generate()).to_content()
    assert "backup" not in content


def test_parsing_accepts_a_null_backup(bundle: SecretsBundle) -> None:
    content = dict(bundle.to_content(), backup=None)
    assert SecretsBundle.from_content(content).backup is None


def test_parsing_ignores_the_message_type(bundle: SecretsBundle) -> None:
    content = dict(bundle.to_content(), type="m.login.secrets")
    assert SecretsBundle.from_content(content).to_content() == bundle.to_content()


@pytest.mark.parametrize("name", CROSS_SIGNING_KEY_NAMES)
def test_parsing_rejects_a_missing_cross_signing_key_naming_it(bundle: SecretsBundle, name: str) -> None:
    content = bundle.to_content()
    del content["cross_signing"][name]
    with pytest.raises(InvalidSecretsBundle, match=name):
        SecretsBundle.from_content(content)


def test_parsing_rejects_a_seed_of_the_wrong_length_without_echoing_it(bundle: SecretsBundle) -> None:
    content = bundle.to_content()
    content["cross_signing"]["master_key"] = "c2hvcnQgc2VlZA"
    with pytest.raises(InvalidSecretsBundle) as caught:
        SecretsBundle.from_content(content)
    assert "c2hvcnQgc2VlZA" not in str(caught.value)


def test_parsing_rejects_an_unknown_backup_algorithm(bundle: SecretsBundle) -> None:
    content = bundle.to_content()
    content["backup"]["algorithm"] = "org.example.backup"
    with pytest.raises(InvalidSecretsBundle):
        SecretsBundle.from_content(content)


def test_parsing_rejects_a_missing_cross_signing_object() -> None:
    with pytest.raises(InvalidSecretsBundle):
        SecretsBundle.from_content({"backup": None})


# --- derived public keys ---


def test_backup_public_key_matches_vodozemac_derivation() -> None:
    key = BackupKey.generate()
    derived = vodozemac.Curve25519SecretKey.from_bytes(key.private_key()).public_key().to_base64()
    assert key.public_key_base64 == derived


def test_device_signing_upload_signs_ssk_and_usk_with_the_master_key() -> None:
    keys = CrossSigningKeys.generate()
    body = keys.device_signing_upload_body(USER)
    for name in ("self_signing_key", "user_signing_key"):
        verify_json(body[name], signer_id=USER, key_id=keys.master_key.key_id, public_key=keys.master_key.public_key)


def test_device_signing_upload_declares_each_key_usage() -> None:
    body = CrossSigningKeys.generate().device_signing_upload_body(USER)
    assert [body[name]["usage"] for name in CROSS_SIGNING_KEY_NAMES] == [
        ["master"],
        ["self_signing"],
        ["user_signing"],
    ]


def test_cross_signing_key_ids_are_ed25519_public_keys() -> None:
    keys = CrossSigningKeys.generate()
    body = keys.device_signing_upload_body(USER)
    assert body["master_key"]["keys"] == {
        f"ed25519:{keys.master_key.public_key_base64}": keys.master_key.public_key_base64
    }


# --- checks against the homeserver ---


def test_matching_secrets_pass_the_check(bundle: SecretsBundle) -> None:
    assert bundle.backup is not None
    bundle.check_against(
        user_id=USER,
        keys_query_response=keys_query_for(bundle.cross_signing),
        backup_version_info=backup_version_for(bundle.backup),
    )


@pytest.mark.parametrize("name", CROSS_SIGNING_KEY_NAMES)
def test_each_mismatched_cross_signing_key_is_named(bundle: SecretsBundle, name: str) -> None:
    published = {n: bundle.cross_signing.by_name(n) for n in CROSS_SIGNING_KEY_NAMES}
    published[name] = Ed25519SigningKey.generate()
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(user_id=USER, keys_query_response=keys_query_for(CrossSigningKeys(**published)))
    assert caught.value.key_name == name


@pytest.mark.parametrize("name", CROSS_SIGNING_KEY_NAMES)
def test_mismatch_errors_contain_no_key_material(bundle: SecretsBundle, name: str) -> None:
    other = Ed25519SigningKey.generate()
    published = {n: bundle.cross_signing.by_name(n) for n in CROSS_SIGNING_KEY_NAMES}
    published[name] = other
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(user_id=USER, keys_query_response=keys_query_for(CrossSigningKeys(**published)))
    mine = bundle.cross_signing.by_name(name)
    for material in (
        mine.seed_base64(),
        mine.public_key_base64,
        other.public_key_base64,
        other.seed_base64(),
    ):
        assert material not in str(caught.value)


@pytest.mark.parametrize("field", ["master_keys", "self_signing_keys", "user_signing_keys"])
def test_an_unpublished_cross_signing_key_is_a_mismatch(bundle: SecretsBundle, field: str) -> None:
    response = keys_query_for(bundle.cross_signing)
    del response[field]
    with pytest.raises(SecretsMismatch):
        bundle.check_against(user_id=USER, keys_query_response=response)


def test_a_published_key_whose_id_differs_from_its_value_is_a_mismatch(bundle: SecretsBundle) -> None:
    response = keys_query_for(bundle.cross_signing)
    master = bundle.cross_signing.master_key.public_key_base64
    response["master_keys"][USER]["keys"] = {"ed25519:SOMETHINGELSE": master}
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(user_id=USER, keys_query_response=response)
    assert caught.value.key_name == "master_key"


def test_a_mismatched_backup_key_is_named(bundle: SecretsBundle) -> None:
    assert bundle.backup is not None
    info = backup_version_for(bundle.backup)
    info["auth_data"]["public_key"] = BackupKey.generate().public_key_base64
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(
            user_id=USER, keys_query_response=keys_query_for(bundle.cross_signing), backup_version_info=info
        )
    assert caught.value.key_name == "backup_key"


def test_a_different_backup_version_is_named(bundle: SecretsBundle) -> None:
    assert bundle.backup is not None
    info = dict(backup_version_for(bundle.backup), version="4")
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(
            user_id=USER, keys_query_response=keys_query_for(bundle.cross_signing), backup_version_info=info
        )
    assert caught.value.key_name == "backup_version"


def test_a_backup_when_the_server_has_none_is_a_mismatch(bundle: SecretsBundle) -> None:
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(
            user_id=USER, keys_query_response=keys_query_for(bundle.cross_signing), backup_version_info=None
        )
    assert caught.value.key_name == "backup_version"


def test_a_different_backup_algorithm_is_named(bundle: SecretsBundle) -> None:
    assert bundle.backup is not None
    info = dict(backup_version_for(bundle.backup), algorithm="org.example.other")
    with pytest.raises(SecretsMismatch) as caught:
        bundle.check_against(
            user_id=USER, keys_query_response=keys_query_for(bundle.cross_signing), backup_version_info=info
        )
    assert caught.value.key_name == "backup_algorithm"


# --- repr hygiene ---


def secret_strings(bundle: SecretsBundle) -> list[str]:
    content = bundle.to_content()
    return [*content["cross_signing"].values(), content["backup"]["key"]]


def test_bundle_repr_contains_no_private_key(bundle: SecretsBundle) -> None:
    text = repr(bundle)
    assert bundle.cross_signing.master_key.public_key_base64 in text
    assert not any(secret in text for secret in secret_strings(bundle))


def test_backup_secret_and_key_reprs_contain_no_private_key(bundle: SecretsBundle) -> None:
    assert bundle.backup is not None
    private = bundle.backup.key.private_key_base64()
    assert private not in repr(bundle.backup)
    assert private not in repr(bundle.backup.key)


def test_bundle_str_contains_no_private_key(bundle: SecretsBundle) -> None:
    assert not any(secret in str(bundle) for secret in secret_strings(bundle))


def test_upload_body_names_the_user_and_usage_of_each_key(bundle: SecretsBundle) -> None:
    body = bundle.cross_signing.device_signing_upload_body(USER)

    usages = {"master_key": ["master"], "self_signing_key": ["self_signing"], "user_signing_key": ["user_signing"]}
    for name, usage in usages.items():
        assert (body[name]["user_id"], body[name]["usage"]) == (USER, usage)


@pytest.mark.parametrize("key_object", ["ed25519:abc", ["a"], 5], ids=["string", "list", "number"])
def test_a_published_key_that_is_not_an_object_is_a_mismatch(bundle: SecretsBundle, key_object: object) -> None:
    response = keys_query_for(bundle.cross_signing)
    response["master_keys"][USER] = key_object

    with pytest.raises(SecretsMismatch) as raised:
        bundle.check_against(user_id=USER, keys_query_response=response)
    assert raised.value.key_name == "master_key"


def test_a_published_key_object_with_two_keys_is_a_mismatch(bundle: SecretsBundle) -> None:
    response = keys_query_for(bundle.cross_signing)
    other = Ed25519SigningKey.generate()
    response["master_keys"][USER]["keys"][other.key_id] = other.public_key_base64

    with pytest.raises(SecretsMismatch) as raised:
        bundle.check_against(user_id=USER, keys_query_response=response)
    assert raised.value.key_name == "master_key"
