"""DEV ONLY: encrypted room history for ``qrlink demo``, to show what the handed-over secrets are for.

Before the handover the phone writes history a new device could not read on its own
(:func:`write_encrypted_history`): it creates an encrypted room on the dev stack's Synapse, sends one
Megolm-encrypted message and stores the message's room key in the server-side key backup, encrypted to the
backup's public key. After the handover the desktop reads it (:func:`read_encrypted_history`): it restores the
room keys from the backup with the backup private key it received over the secure channel, fetches the rooms'
encrypted events from Synapse and decrypts them.

The cryptography is the client library's (:mod:`qrlink_client.e2ee.room_keys`, :mod:`qrlink_client.e2ee.megolm`);
this module only strings the requests together. Needs the ``e2ee`` extra.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qrlink_client.e2ee import BackupSecret, E2eeHomeserver

__all__ = [
    "DecryptedMessage",
    "EncryptedHistory",
    "HistoryReading",
    "read_encrypted_history",
    "write_encrypted_history",
]

ROOM_NAME = "qrlink demo: encrypted history"


@dataclass(frozen=True)
class EncryptedHistory:
    """What the phone wrote: one encrypted message in one encrypted room, its room key in the backup."""

    room_id: str
    event_id: str
    session_id: str
    backup_version: str
    text: str = field(repr=False)


@dataclass(frozen=True)
class DecryptedMessage:
    """One ``m.room.encrypted`` event the desktop decrypted with a room key from the backup."""

    room_id: str
    event_id: str
    sender: str
    sender_device: str
    body: str = field(repr=False)


@dataclass(frozen=True)
class HistoryReading:
    """What the desktop read: how many room keys the backup gave it, and the messages they decrypted."""

    room_keys: int
    messages: tuple[DecryptedMessage, ...]


async def write_encrypted_history(homeserver: E2eeHomeserver, *, device_id: str, text: str) -> EncryptedHistory:
    """DEV ONLY: as the device ``device_id`` (already published, with a key backup set up): create an encrypted
    room, send ``text`` in it encrypted with a new Megolm session, and back up that session's room key."""
    import vodozemac

    from qrlink_client.e2ee import (
        ENCRYPTED_EVENT_TYPE,
        MEGOLM_ALGORITHM,
        BackedUpRoomKey,
        encrypt_room_event,
        encrypt_room_key,
        key_backup_data,
    )

    user_id = await homeserver.user_id()
    device = (await homeserver.query_keys([user_id]))["device_keys"][user_id][device_id]["keys"]
    sender_key, sender_ed25519 = device[f"curve25519:{device_id}"], device[f"ed25519:{device_id}"]
    backup = await homeserver.get_backup_version()
    if backup is None:
        raise RuntimeError(f"{user_id} has no key backup to store the room key in")

    room_id = await homeserver.create_room(
        {
            "name": ROOM_NAME,
            "preset": "private_chat",
            "initial_state": [
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM_ALGORITHM}}
            ],
        }
    )
    outbound = vodozemac.GroupSession()
    # The sender keeps an inbound copy of its own session, as clients do; that copy is what gets backed up.
    inbound = vodozemac.InboundGroupSession(outbound.session_key)
    content = encrypt_room_event(
        outbound,
        room_id=room_id,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": text},
        sender_key=sender_key,
        device_id=device_id,
    )
    event_id = await homeserver.send_event(room_id, ENCRYPTED_EVENT_TYPE, content, txn_id=secrets.token_hex(8))

    room_key = BackedUpRoomKey.from_inbound_session(inbound, sender_key=sender_key, sender_ed25519=sender_ed25519)
    session_data = encrypt_room_key(backup["auth_data"]["public_key"], room_key)
    body = key_backup_data(session_data, first_message_index=inbound.first_known_index, is_verified=True)
    await homeserver.put_room_key(backup["version"], room_id, outbound.session_id, body)
    return EncryptedHistory(
        room_id=room_id,
        event_id=event_id,
        session_id=outbound.session_id,
        backup_version=backup["version"],
        text=text,
    )


async def read_encrypted_history(homeserver: E2eeHomeserver, backup: BackupSecret) -> HistoryReading:
    """DEV ONLY: restore every room key of the backup with ``backup``'s private key, then decrypt the latest
    encrypted events of each joined room whose session the backup holds. Raises the library's
    :class:`~qrlink_client.e2ee.RoomKeyBackupError` or :class:`~qrlink_client.e2ee.RoomEventDecryptionError` when a
    key or an event does not decrypt."""
    from qrlink_client.e2ee import (
        ENCRYPTED_EVENT_TYPE,
        RoomEventDecryptionError,
        decrypt_room_event,
        room_keys_from_backup,
    )

    keys = room_keys_from_backup(backup.key, await homeserver.get_room_keys(backup.backup_version))
    messages: list[DecryptedMessage] = []
    for room_id in await homeserver.joined_rooms():
        for event in reversed(await homeserver.room_messages(room_id, types=[ENCRYPTED_EVENT_TYPE])):
            content = event.get("content") or {}
            key = keys.get((room_id, str(content.get("session_id"))))
            if key is None:
                continue  # a session the backup does not hold: a real client would ask other devices for it
            if content.get("sender_key") != key.sender_key:
                raise RoomEventDecryptionError("the event's sender key is not the one the backed-up key names")
            payload = decrypt_room_event(key.inbound_session(), room_id=room_id, content=content)
            messages.append(
                DecryptedMessage(
                    room_id=room_id,
                    event_id=str(event.get("event_id")),
                    sender=str(event.get("sender")),
                    sender_device=str(content.get("device_id")),
                    body=str(payload["content"].get("body", "")),
                )
            )
    return HistoryReading(room_keys=len(keys), messages=tuple(messages))
