"""Secrets sources: keys held by the app, and keys unlocked from secret storage with a recovery key.

The account data here lives in a dict-backed :class:`AccountDataReader` so that the unlocking logic is tested
on its own; ``test_e2ee_synapse.py`` runs the same path over HTTP against a real Synapse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from qrlink_client.e2ee import (
    MEGOLM_BACKUP_ALGORITHM,
    BackupKey,
    BackupSecret,
    CrossSigningKeys,
    RecoveryKeyParityError,
    SecretNotFound,
    SecretsBundle,
    SecretStorageKey,
    SecretStorageSecrets,
    StaticSecrets,
    WrongRecoveryKey,
    secret_storage_account_data,
)


class AccountData:
    """Account data and the current backup version held in memory (an :class:`AccountDataReader`)."""

    def __init__(self, backup_version: dict[str, Any] | None = None) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.backup_version = backup_version

    async def get_account_data(self, event_type: str) -> Mapping[str, Any] | None:
        return self.data.get(event_type)

    async def get_backup_version(self) -> Mapping[str, Any] | None:
        return self.backup_version


@pytest.fixture
def bundle() -> SecretsBundle:
    return SecretsBundle(
        cross_signing=CrossSigningKeys.generate(),
        backup=BackupSecret(key=BackupKey.generate(), backup_version="7"),
    )


def stored(bundle: SecretsBundle, key: SecretStorageKey) -> AccountData:
    """Account data as a client that set up ``bundle`` in secret storage under ``key`` leaves it."""
    assert bundle.backup is not None
    store = AccountData(
        backup_version={
            "algorithm": MEGOLM_BACKUP_ALGORITHM,
            "auth_data": {"public_key": bundle.backup.key.public_key_base64},
            "version": bundle.backup.backup_version,
        }
    )
    store.data.update(secret_storage_account_data(key, bundle))
    return store


async def test_static_secrets_return_the_given_bundle(bundle: SecretsBundle) -> None:
    assert await StaticSecrets(bundle).load_bundle() is bundle


async def test_secret_storage_yields_the_stored_bundle(bundle: SecretsBundle) -> None:
    key = SecretStorageKey.generate()
    loaded = await SecretStorageSecrets(key.recovery_key(), stored(bundle, key)).load_bundle()
    assert loaded.to_content() == bundle.to_content()


async def test_secret_storage_setup_points_the_default_key_at_the_new_key(bundle: SecretsBundle) -> None:
    key = SecretStorageKey.generate()
    writes = secret_storage_account_data(key, bundle)
    assert writes[-1] == ("m.secret_storage.default_key", {"key": key.key_id})


async def test_a_wrong_recovery_key_is_rejected(bundle: SecretsBundle) -> None:
    store = stored(bundle, SecretStorageKey.generate())
    with pytest.raises(WrongRecoveryKey):
        await SecretStorageSecrets(SecretStorageKey.generate().recovery_key(), store).load_bundle()


async def test_a_mistyped_recovery_key_is_rejected(bundle: SecretsBundle) -> None:
    key = SecretStorageKey.generate()
    typed = key.recovery_key()
    typo = typed[:-1] + ("a" if typed[-1] != "a" else "b")
    with pytest.raises(RecoveryKeyParityError):
        await SecretStorageSecrets(typo, stored(bundle, key)).load_bundle()


async def test_missing_default_key_is_reported(bundle: SecretsBundle) -> None:
    with pytest.raises(SecretNotFound):
        await SecretStorageSecrets(SecretStorageKey.generate().recovery_key(), AccountData()).load_bundle()


async def test_a_missing_cross_signing_secret_is_reported(bundle: SecretsBundle) -> None:
    key = SecretStorageKey.generate()
    store = stored(bundle, key)
    del store.data["m.cross_signing.user_signing"]
    with pytest.raises(SecretNotFound):
        await SecretStorageSecrets(key.recovery_key(), store).load_bundle()


async def test_backup_is_left_out_when_the_server_has_no_backup(bundle: SecretsBundle) -> None:
    key = SecretStorageKey.generate()
    store = stored(bundle, key)
    store.backup_version = None
    assert (await SecretStorageSecrets(key.recovery_key(), store).load_bundle()).backup is None


async def test_backup_is_left_out_when_the_stored_key_belongs_to_a_replaced_backup(
    bundle: SecretsBundle,
) -> None:
    key = SecretStorageKey.generate()
    store = stored(bundle, key)
    assert store.backup_version is not None
    store.backup_version = dict(store.backup_version, auth_data={"public_key": BackupKey.generate().public_key_base64})
    assert (await SecretStorageSecrets(key.recovery_key(), store).load_bundle()).backup is None


async def test_bundle_without_stored_backup_has_no_backup() -> None:
    bundle = SecretsBundle(cross_signing=CrossSigningKeys.generate())
    key = SecretStorageKey.generate()
    store = AccountData()
    store.data.update(secret_storage_account_data(key, bundle))
    assert (await SecretStorageSecrets(key.recovery_key(), store).load_bundle()).backup is None


def test_secret_storage_source_repr_hides_the_recovery_key() -> None:
    recovery_key = SecretStorageKey.generate().recovery_key()
    assert recovery_key not in repr(SecretStorageSecrets(recovery_key, AccountData()))


def test_static_source_repr_hides_the_secrets(bundle: SecretsBundle) -> None:
    text = repr(StaticSecrets(bundle))
    assert bundle.cross_signing.self_signing_key.seed_base64() not in text
