"""Where the existing device gets the secrets it sends in ``m.login.secrets``.

:class:`SecretsSource` is the one interface the login flow needs: "give me the bundle". Two implementations:
:class:`StaticSecrets` for apps that already hold the keys, and :class:`SecretStorageSecrets`, which unlocks
the user's secret storage with a recovery key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .backup import BackupKey
from .cross_signing import CROSS_SIGNING_KEY_NAMES, CrossSigningKeys
from .errors import InvalidKeyMaterial, MalformedSecretStorageData, SecretNotFound, SecretsMismatch
from .secret_storage import (
    CROSS_SIGNING_SECRET_NAMES,
    DEFAULT_KEY_EVENT_TYPE,
    MEGOLM_BACKUP_SECRET_NAME,
    SecretStorageKey,
    key_event_type,
)
from .secrets_bundle import BackupSecret, SecretsBundle
from .signing import Ed25519SigningKey

__all__ = ["AccountDataReader", "SecretStorageSecrets", "SecretsSource", "StaticSecrets"]


class SecretsSource(Protocol):
    """Produces the :class:`SecretsBundle` an existing device sends to the new one."""

    async def load_bundle(self) -> SecretsBundle:
        """Return the bundle, or raise an :class:`~.errors.E2eeError` saying why it cannot be had."""
        ...


class AccountDataReader(Protocol):
    """The two homeserver reads :class:`SecretStorageSecrets` needs (:class:`~.homeserver.E2eeHomeserver` has
    both)."""

    async def get_account_data(self, event_type: str) -> Mapping[str, Any] | None:
        """The user's global account data of ``event_type``, or ``None`` if unset."""
        ...

    async def get_backup_version(self) -> Mapping[str, Any] | None:
        """``GET /room_keys/version``, or ``None`` if the user has no backup."""
        ...


class StaticSecrets:
    """A :class:`SecretsSource` for keys the app already holds."""

    __slots__ = ("_bundle",)

    def __init__(self, bundle: SecretsBundle) -> None:
        self._bundle = bundle

    async def load_bundle(self) -> SecretsBundle:
        """The bundle given to the constructor."""
        return self._bundle

    def __repr__(self) -> str:
        return f"StaticSecrets({self._bundle!r})"


class SecretStorageSecrets:
    """A :class:`SecretsSource` that decrypts the secrets from secret storage with a recovery key.

    It reads ``m.secret_storage.default_key``, checks the recovery key against that key's description, and
    decrypts the three cross-signing secrets (all required) and ``m.megolm_backup.v1``. The backup secret is
    included only when the homeserver has a ``m.megolm_backup.v1.curve25519-aes-sha2`` backup whose public key
    it matches: a stored key left over from an older, replaced backup is useless to the new device, so it is
    left out rather than sent to fail there.
    """

    __slots__ = ("_reader", "_recovery_key")

    def __init__(self, recovery_key: str, reader: AccountDataReader) -> None:
        self._recovery_key = recovery_key
        self._reader = reader

    async def load_bundle(self) -> SecretsBundle:
        """Unlock secret storage and return the bundle.

        Raises :class:`~.errors.InvalidRecoveryKey` subclasses, :class:`~.errors.WrongRecoveryKey`,
        :class:`~.errors.SecretNotFound`, :class:`~.errors.SecretMacMismatch` or
        :class:`~.errors.MalformedSecretStorageData`.
        """
        key = await self._unlock()
        seeds: dict[str, Ed25519SigningKey] = {}
        for name in CROSS_SIGNING_KEY_NAMES:
            secret_name = CROSS_SIGNING_SECRET_NAMES[name]
            value = await self._decrypt(key, secret_name)
            if value is None:
                raise SecretNotFound(f"secret storage holds no {secret_name!r}")
            try:
                seeds[name] = Ed25519SigningKey.from_base64(value)
            except InvalidKeyMaterial:
                raise MalformedSecretStorageData(f"secret {secret_name!r} is not a base64 Ed25519 seed") from None
        return SecretsBundle(cross_signing=CrossSigningKeys(**seeds), backup=await self._backup(key))

    async def _unlock(self) -> SecretStorageKey:
        default = await self._reader.get_account_data(DEFAULT_KEY_EVENT_TYPE)
        key_id = default.get("key") if default is not None else None
        if not isinstance(key_id, str):
            raise SecretNotFound("the user has no default secret storage key")
        description = await self._reader.get_account_data(key_event_type(key_id))
        if description is None:
            raise SecretNotFound(f"secret storage key {key_id!r} has no description")
        key = SecretStorageKey.from_recovery_key(self._recovery_key, key_id)
        key.check(description)
        return key

    async def _decrypt(self, key: SecretStorageKey, secret_name: str) -> str | None:
        content = await self._reader.get_account_data(secret_name)
        if content is None:
            return None
        return key.decrypt_secret_content(secret_name, content)

    async def _backup(self, key: SecretStorageKey) -> BackupSecret | None:
        value = await self._decrypt(key, MEGOLM_BACKUP_SECRET_NAME)
        if value is None:
            return None
        try:
            backup_key = BackupKey.from_base64(value)
        except InvalidKeyMaterial:
            raise MalformedSecretStorageData(
                f"secret {MEGOLM_BACKUP_SECRET_NAME!r} is not a base64 Curve25519 key"
            ) from None
        version_info = await self._reader.get_backup_version()
        if version_info is None or not isinstance(version_info.get("version"), str):
            return None
        secret = BackupSecret(key=backup_key, backup_version=version_info["version"])
        try:
            secret.check_against(version_info)
        except SecretsMismatch:
            return None
        return secret

    def __repr__(self) -> str:
        return "SecretStorageSecrets(recovery_key=<hidden>)"
