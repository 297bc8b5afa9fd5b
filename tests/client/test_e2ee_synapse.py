"""The E2EE steps of QR login against a real Synapse: bootstrap an existing device, unlock its secret storage
with the recovery key, hand the bundle to a new device, and have the new device publish SSK-signed keys.

Synapse runs with password login (no OAuth server) so that test users can be made directly. The key, backup
and account data endpoints behave the same under OAuth delegation, except that replacing existing
cross-signing keys then needs approval at the OAuth server (a ``m.oauth`` UIA stage) instead of a password.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from qrlink_client.e2ee import (
    AlreadyBootstrapped,
    BackupKey,
    BackupSecret,
    CrossSigningKeys,
    E2eeHomeserver,
    OlmDevice,
    SecretsBundle,
    SecretsMismatch,
    SecretStorageSecrets,
    UserInteractiveAuthRequired,
    bootstrap_user,
    publish_new_device,
    verify_json,
)
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

_UNLIMITED = {"per_second": 1000, "burst_count": 1000}


@pytest.fixture(scope="module")
def synapse_with_passwords() -> Iterator[SynapseServer]:
    overrides: dict[str, Any] = {
        "matrix_authentication_service": {"enabled": False},
        "password_config": {"enabled": True},
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "rc_registration": _UNLIMITED,
        "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    }
    with SynapseServer(msc4108_enabled=False, msc4388_mode="off", overrides=overrides) as server:
        yield server


class User:
    """A registered user able to log in further devices."""

    def __init__(self, server: SynapseServer, client: httpx.AsyncClient) -> None:
        self.server = server
        self.client = client
        self.localpart = f"user{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(16)

    async def register(self, device_id: str) -> E2eeHomeserver:
        response = await self.client.post(
            f"{self.server.base_url}_matrix/client/v3/register",
            json={
                "username": self.localpart,
                "password": self.password,
                "device_id": device_id,
                "auth": {"type": "m.login.dummy"},
            },
        )
        response.raise_for_status()
        return self._homeserver(response.json())

    async def login(self, device_id: str) -> E2eeHomeserver:
        response = await self.client.post(
            f"{self.server.base_url}_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.localpart},
                "password": self.password,
                "device_id": device_id,
            },
        )
        response.raise_for_status()
        return self._homeserver(response.json())

    def password_auth(self, session: str | None) -> dict[str, Any]:
        return {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.localpart},
            "password": self.password,
            "session": session,
        }

    def _homeserver(self, login: dict[str, Any]) -> E2eeHomeserver:
        return E2eeHomeserver(self.server.base_url, login["access_token"], user_id=login["user_id"], client=self.client)


@pytest.fixture
async def user(synapse_with_passwords: SynapseServer) -> AsyncIterator[User]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        yield User(synapse_with_passwords, client)


async def test_new_device_publishes_keys_signed_by_the_self_signing_key(user: User) -> None:
    existing_device = OlmDevice.generate("EXISTING")
    existing = await user.register(existing_device.device_id)
    setup = await bootstrap_user(existing, existing_device)

    # The existing device unlocks secret storage with the recovery key, as an app would for QR login.
    bundle = await SecretStorageSecrets(setup.recovery_key(), existing).load_bundle()
    assert bundle.to_content() == setup.bundle.to_content()

    # rust-sdk's choice of device id: the Curve25519 key, which may contain "/" and "+".
    new_device = OlmDevice.generate()
    new = await user.login(new_device.device_id)
    await publish_new_device(new, new_device, SecretsBundle.from_content(bundle.to_content()), one_time_keys=5)

    query = await existing.query_keys([setup.user_id])
    published = query["device_keys"][setup.user_id][new_device.device_id]
    ssk = setup.bundle.cross_signing.self_signing_key
    verify_json(published, signer_id=setup.user_id, key_id=ssk.key_id, public_key=ssk.public_key)


async def test_bootstrap_signs_the_first_device_with_the_self_signing_key(user: User) -> None:
    device = OlmDevice.generate("FIRST")
    homeserver = await user.register(device.device_id)
    setup = await bootstrap_user(homeserver, device, with_backup=False, with_secret_storage=False)

    query = await homeserver.query_keys([setup.user_id])
    published = query["device_keys"][setup.user_id]["FIRST"]
    ssk = setup.bundle.cross_signing.self_signing_key
    verify_json(published, signer_id=setup.user_id, key_id=ssk.key_id, public_key=ssk.public_key)


async def test_bootstrapped_backup_is_signed_by_the_master_key(user: User) -> None:
    device = OlmDevice.generate("FIRST")
    homeserver = await user.register(device.device_id)
    setup = await bootstrap_user(homeserver, device, with_secret_storage=False)

    info = await homeserver.get_backup_version()
    assert info is not None
    assert setup.bundle.backup is not None
    setup.bundle.backup.check_against(info)
    master = setup.bundle.cross_signing.master_key
    verify_json(info["auth_data"], signer_id=setup.user_id, key_id=master.key_id, public_key=master.public_key)


async def test_new_device_refuses_secrets_that_do_not_match_and_uploads_nothing(user: User) -> None:
    existing_device = OlmDevice.generate("EXISTING")
    existing = await user.register(existing_device.device_id)
    setup = await bootstrap_user(existing, existing_device, with_backup=False, with_secret_storage=False)

    forged = SecretsBundle(cross_signing=CrossSigningKeys.generate())
    new_device = OlmDevice.generate("NEWDEVICE")
    new = await user.login(new_device.device_id)
    with pytest.raises(SecretsMismatch) as caught:
        await publish_new_device(new, new_device, forged)
    assert caught.value.key_name == "master_key"
    query = await existing.query_keys([setup.user_id])
    assert "NEWDEVICE" not in query["device_keys"][setup.user_id]


async def test_new_device_refuses_a_backup_key_that_does_not_match(user: User) -> None:
    existing_device = OlmDevice.generate("EXISTING")
    existing = await user.register(existing_device.device_id)
    setup = await bootstrap_user(existing, existing_device, with_secret_storage=False)
    assert setup.bundle.backup is not None

    wrong_backup = BackupSecret(key=BackupKey.generate(), backup_version=setup.bundle.backup.backup_version)
    bundle = SecretsBundle(cross_signing=setup.bundle.cross_signing, backup=wrong_backup)
    new_device = OlmDevice.generate("NEWDEVICE")
    new = await user.login(new_device.device_id)
    with pytest.raises(SecretsMismatch) as caught:
        await publish_new_device(new, new_device, bundle)
    assert caught.value.key_name == "backup_key"


async def test_bootstrapping_a_user_again_says_it_already_has_cross_signing(user: User) -> None:
    device = OlmDevice.generate("FIRST")
    homeserver = await user.register(device.device_id)
    first = await bootstrap_user(homeserver, device, with_backup=False, with_secret_storage=False)

    second_device = OlmDevice.generate("SECOND")
    second = await user.login(second_device.device_id)
    with pytest.raises(AlreadyBootstrapped) as caught:
        await bootstrap_user(second, second_device)
    error = caught.value
    master = first.bundle.cross_signing.master_key.public_key_base64
    assert (error.user_id, error.master_key) == (first.user_id, master)
    message = str(error)
    assert f"{first.user_id} already has cross-signing keys (master key {master})" in message
    assert "sign it in with QR login" in message and "auth=" in message
    # Refused before anything was uploaded: the second device published no keys.
    query = await second.query_keys([first.user_id])
    assert second_device.device_id not in query["device_keys"][first.user_id]


async def test_bootstrap_with_auth_replaces_existing_cross_signing_keys(user: User) -> None:
    device = OlmDevice.generate("FIRST")
    homeserver = await user.register(device.device_id)
    await bootstrap_user(homeserver, device, with_backup=False, with_secret_storage=False)

    # A wrong password: the homeserver still asks for UIA, and the error lists what it offers.
    with pytest.raises(UserInteractiveAuthRequired) as caught:
        await bootstrap_user(
            homeserver,
            device,
            auth={**user.password_auth(None), "password": "wrong"},
            upload_device_keys=False,
            with_backup=False,
            with_secret_storage=False,
        )
    assert ["m.login.password"] in caught.value.flows
    assert "the server offers: m.login.password" in str(caught.value)

    again = await bootstrap_user(
        homeserver,
        device,
        auth=user.password_auth(caught.value.session),
        upload_device_keys=False,
        with_backup=False,
        with_secret_storage=False,
    )
    query = await homeserver.query_keys([again.user_id])
    assert query["master_keys"][again.user_id]["keys"] == {
        again.bundle.cross_signing.master_key.key_id: again.bundle.cross_signing.master_key.public_key_base64
    }
