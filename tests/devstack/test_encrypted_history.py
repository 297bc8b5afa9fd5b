"""Encrypted history on the real Synapse: a device writes a Megolm message and backs up its room key; another
device of the same user restores the key with the backup private key and decrypts the message
(:mod:`devstack.history`, built on :mod:`qrlink_client.e2ee.room_keys` and :mod:`qrlink_client.e2ee.megolm`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from devstack import DevStack
from devstack.demo import DemoUser, create_demo_user
from devstack.history import EncryptedHistory, read_encrypted_history, write_encrypted_history
from qrlink_client.e2ee import (
    MEGOLM_ALGORITHM,
    BackupKey,
    BackupSecret,
    E2eeHomeserver,
    RoomKeyBackupError,
    SecretStorageSecrets,
)

pytestmark = pytest.mark.synapse

TEXT = "written by the phone before the desktop existed"


@dataclass
class Written:
    user: DemoUser
    phone: E2eeHomeserver
    desktop: E2eeHomeserver
    backup: BackupSecret
    history: EncryptedHistory


@pytest.fixture
async def written(stack: DevStack) -> AsyncIterator[Written]:
    user = await create_demo_user(stack)
    desktop_tokens = await stack.async_login_device(user.localpart, "DESKTOP")
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        phone = E2eeHomeserver(stack.homeserver_url, user.access_token, user_id=user.user_id, client=http)
        desktop = E2eeHomeserver(stack.homeserver_url, desktop_tokens.access_token, user_id=user.user_id, client=http)
        bundle = await SecretStorageSecrets(user.recovery_key, phone).load_bundle()
        assert bundle.backup is not None
        history = await write_encrypted_history(phone, device_id=user.device_id, text=TEXT)
        yield Written(user, phone, desktop, bundle.backup, history)


async def test_synapse_stores_the_encrypted_room_key_in_the_current_backup(written: Written) -> None:
    history = written.history

    stored = await written.phone.get_room_keys(history.backup_version)

    entry = stored["rooms"][history.room_id]["sessions"][history.session_id]
    assert (entry["first_message_index"], entry["forwarded_count"], entry["is_verified"]) == (0, 0, True)
    assert set(entry["session_data"]) == {"ephemeral", "ciphertext", "mac"}


async def test_the_message_is_an_m_room_encrypted_event_in_an_encrypted_room(written: Written) -> None:
    history = written.history

    events = await written.desktop.room_messages(history.room_id, types=["m.room.encrypted"])

    (event,) = events
    assert event["event_id"] == history.event_id
    content = event["content"]
    assert (content["algorithm"], content["session_id"], content["device_id"]) == (
        MEGOLM_ALGORITHM,
        history.session_id,
        written.user.device_id,
    )
    assert TEXT not in str(event)
    state = await written.desktop.room_messages(history.room_id, types=["m.room.encryption"])
    assert [e["content"] for e in state] == [{"algorithm": MEGOLM_ALGORITHM}]


async def test_another_device_with_the_backup_key_decrypts_the_message(written: Written) -> None:
    reading = await read_encrypted_history(written.desktop, written.backup)

    assert reading.room_keys == 1
    (message,) = reading.messages
    assert (message.event_id, message.sender, message.sender_device, message.body) == (
        written.history.event_id,
        written.user.user_id,
        written.user.device_id,
        TEXT,
    )


async def test_another_backup_key_cannot_restore_the_room_key(written: Written) -> None:
    wrong = BackupSecret(BackupKey.generate(), written.backup.backup_version)

    with pytest.raises(RoomKeyBackupError, match="MAC mismatch"):
        await read_encrypted_history(written.desktop, wrong)
