"""Homeserver-facing E2EE steps for both ends of QR login.

* :func:`publish_new_device` — the **new device** after ``m.login.secrets``: check the secrets against what
  the homeserver publishes, then one ``/keys/upload`` with the device keys signed by the device and the SSK.
* :func:`bootstrap_user` — set up a **fresh user** the way an existing client would (cross-signing, a key
  backup and secret storage holding both), so a test or demo "existing device" has secrets to hand over.

The request bodies come from pure builders (:func:`secret_storage_account_data` and the methods of
:class:`~.cross_signing.CrossSigningKeys`, :class:`~.device.OlmDevice`, :func:`~.backup.backup_auth_data`);
these functions only sequence the calls.

Synapse and user-interactive auth: ``/keys/device_signing/upload`` needs no UIA while the user has no master
key yet (MSC3967), and :func:`bootstrap_user` without ``auth`` refuses a user who has one
(:class:`~.errors.AlreadyBootstrapped`). Replacing existing keys needs UIA; pass ``auth`` (e.g.
``{"type": "m.login.password", "identifier": {...}, "password": ..., "session": ...}``), or with an
OAuth-delegated homeserver approve the reset at the authorisation server first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backup import MEGOLM_BACKUP_ALGORITHM, BackupKey, backup_auth_data
from .cross_signing import CROSS_SIGNING_KEY_NAMES, CrossSigningKeys
from .device import OlmDevice
from .errors import AlreadyBootstrapped, UserInteractiveAuthRequired
from .homeserver import E2eeHomeserver
from .secret_storage import (
    CROSS_SIGNING_SECRET_NAMES,
    DEFAULT_KEY_EVENT_TYPE,
    MEGOLM_BACKUP_SECRET_NAME,
    SecretStorageKey,
    key_event_type,
)
from .secrets_bundle import BackupSecret, SecretsBundle
from .signing import sign_json

__all__ = ["BootstrapResult", "bootstrap_user", "publish_new_device", "secret_storage_account_data"]


def secret_storage_account_data(key: SecretStorageKey, bundle: SecretsBundle) -> list[tuple[str, dict[str, Any]]]:
    """The account data writes that store ``bundle`` in secret storage under ``key``, as ``(type, content)``.

    Order matters for other clients reading mid-way: the key description first, then the secrets, and the
    ``m.secret_storage.default_key`` pointer last, so it never names a key whose secrets are not there yet.
    """
    writes: list[tuple[str, dict[str, Any]]] = [(key_event_type(key.key_id), key.key_description())]
    for name in CROSS_SIGNING_KEY_NAMES:
        secret_name = CROSS_SIGNING_SECRET_NAMES[name]
        seed = bundle.cross_signing.by_name(name).seed_base64()
        writes.append((secret_name, key.encrypt_secret_content(secret_name, seed)))
    if bundle.backup is not None:
        backup_key = bundle.backup.key.private_key_base64()
        writes.append((MEGOLM_BACKUP_SECRET_NAME, key.encrypt_secret_content(MEGOLM_BACKUP_SECRET_NAME, backup_key)))
    writes.append((DEFAULT_KEY_EVENT_TYPE, {"key": key.key_id}))
    return writes


@dataclass(frozen=True, repr=False)
class BootstrapResult:
    """What :func:`bootstrap_user` created. ``repr`` shows public keys and ids only."""

    user_id: str
    bundle: SecretsBundle
    secret_storage_key: SecretStorageKey | None

    def recovery_key(self) -> str:
        """The recovery key that unlocks the new secret storage. Secret."""
        if self.secret_storage_key is None:
            raise ValueError("secret storage was not set up")
        return self.secret_storage_key.recovery_key()

    def __repr__(self) -> str:
        return (
            f"BootstrapResult(user_id={self.user_id!r}, bundle={self.bundle!r}, "
            f"secret_storage_key={self.secret_storage_key!r})"
        )


async def bootstrap_user(
    homeserver: E2eeHomeserver,
    device: OlmDevice,
    *,
    auth: Mapping[str, Any] | None = None,
    upload_device_keys: bool = True,
    one_time_keys: int = 10,
    with_backup: bool = True,
    with_secret_storage: bool = True,
) -> BootstrapResult:
    """Give a fresh user cross-signing, a key backup and secret storage, from ``device`` (its first device).

    Steps: upload ``device``'s keys (unless ``upload_device_keys`` is false because they already are); upload
    new master/SSK/USK (SSK and USK signed by the master; ``auth`` for UIA); sign ``device`` with the SSK and
    the master key with ``device`` via ``/keys/signatures/upload``; create a backup version whose
    ``auth_data`` is signed by the master key and the device; store the four secrets in secret storage under a
    new default key.

    Without ``auth``, a user who already has a master key in ``/keys/query`` is refused with
    :class:`AlreadyBootstrapped` before anything is uploaded: bootstrapping again would replace the user's
    identity. Pass ``auth`` to replace the keys on purpose. If the homeserver still asks for user-interactive
    auth, :class:`UserInteractiveAuthRequired` lists the flows it offers.
    """
    user_id = await homeserver.user_id()
    if auth is None:
        master_key = await _published_master_key(homeserver, user_id)
        if master_key is not None:
            raise AlreadyBootstrapped(user_id, master_key or None)
    if upload_device_keys:
        await homeserver.upload_keys(device.keys_upload_body(user_id, one_time_keys=one_time_keys))
        device.mark_keys_as_published()

    cross_signing = CrossSigningKeys.generate()
    try:
        await homeserver.upload_device_signing_keys(cross_signing.device_signing_upload_body(user_id), auth=auth)
    except UserInteractiveAuthRequired as error:
        if auth is not None:
            raise
        hint = (
            "bootstrap_user needs auth= to upload cross-signing keys for this user: repeat the call with an auth "
            "dict that completes one of the flows (and carries the session)"
        )
        raise error.with_hint(hint) from None

    master = cross_signing.master_key
    signed_device = cross_signing.sign_device_keys(device.device_keys(user_id), user_id)
    # The device signs the master key too, so this device's own view of the identity is verified.
    signed_master = sign_json(
        cross_signing.key_object("master_key", user_id), signer_id=user_id, key_id=device.key_id, key=device
    )
    await homeserver.upload_signatures(
        {user_id: {device.device_id: signed_device, master.public_key_base64: signed_master}}
    )

    backup: BackupSecret | None = None
    if with_backup:
        backup_key = BackupKey.generate()
        auth_data = backup_auth_data(
            backup_key, user_id=user_id, signers=[(master.key_id, master), (device.key_id, device)]
        )
        version = await homeserver.create_backup_version(MEGOLM_BACKUP_ALGORITHM, auth_data)
        backup = BackupSecret(key=backup_key, backup_version=version)

    bundle = SecretsBundle(cross_signing=cross_signing, backup=backup)
    storage_key: SecretStorageKey | None = None
    if with_secret_storage:
        storage_key = SecretStorageKey.generate()
        for event_type, content in secret_storage_account_data(storage_key, bundle):
            await homeserver.put_account_data(event_type, content)
    return BootstrapResult(user_id=user_id, bundle=bundle, secret_storage_key=storage_key)


async def _published_master_key(homeserver: E2eeHomeserver, user_id: str) -> str | None:
    """The user's master public key from ``/keys/query`` (``""`` if one is listed without a readable key), or
    ``None`` if the user has none."""
    response = await homeserver.query_keys([user_id])
    master = (response.get("master_keys") or {}).get(user_id)
    if not isinstance(master, dict):
        return None
    keys = master.get("keys")
    if isinstance(keys, dict):
        for value in keys.values():
            if isinstance(value, str):
                return value
    return ""


async def publish_new_device(
    homeserver: E2eeHomeserver,
    device: OlmDevice,
    bundle: SecretsBundle,
    *,
    one_time_keys: int = 50,
    check_backup: bool = True,
) -> dict[str, Any]:
    """The new device's last step: verify ``bundle``, then upload its SSK-signed keys in one ``/keys/upload``.

    The cross-signing keys are checked against ``/keys/query`` and, when ``check_backup`` and the bundle has a
    backup, the backup key against ``GET /room_keys/version``; a mismatch raises
    :class:`~.errors.SecretsMismatch` before anything is uploaded. Returns the ``/keys/upload`` response.
    """
    user_id = await homeserver.user_id()
    keys_query = await homeserver.query_keys([user_id])
    backup_info = await homeserver.get_backup_version() if check_backup and bundle.backup is not None else None
    checked = bundle if check_backup else SecretsBundle(cross_signing=bundle.cross_signing)
    checked.check_against(user_id=user_id, keys_query_response=keys_query, backup_version_info=backup_info)
    body = device.keys_upload_body(user_id, bundle.cross_signing, one_time_keys=one_time_keys)
    response = await homeserver.upload_keys(body)
    device.mark_keys_as_published()
    return response
