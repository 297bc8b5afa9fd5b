"""Megolm room events (``m.room.encrypted`` with ``m.megolm.v1.aes-sha2``): encrypt one, decrypt one.

The sending device encrypts ``{"type", "content", "room_id"}`` with its outbound session (vodozemac
``GroupSession``); the event content names the algorithm, the sender's Curve25519 key, the session and the
device. A receiving device needs the matching inbound session: shared over Olm to-device messages, or restored
from the key backup (:class:`~.room_keys.BackedUpRoomKey.inbound_session`). The ``room_id`` inside the
plaintext must match the room the event came from, so a server cannot replay it into another room.

Pure: sending and fetching events is the caller's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import vodozemac

from .errors import RoomEventDecryptionError
from .room_keys import MEGOLM_ALGORITHM

__all__ = ["ENCRYPTED_EVENT_TYPE", "decrypt_room_event", "encrypt_room_event"]

ENCRYPTED_EVENT_TYPE = "m.room.encrypted"


def encrypt_room_event(
    session: vodozemac.GroupSession,
    *,
    room_id: str,
    event_type: str,
    content: Mapping[str, Any],
    sender_key: str,
    device_id: str,
) -> dict[str, Any]:
    """The ``m.room.encrypted`` content carrying ``event_type`` / ``content`` for ``room_id``, encrypted with
    ``session`` by the device ``device_id`` whose Curve25519 identity key is ``sender_key``."""
    payload = {"type": event_type, "content": dict(content), "room_id": room_id}
    plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return {
        "algorithm": MEGOLM_ALGORITHM,
        "sender_key": sender_key,
        "ciphertext": session.encrypt(plaintext).to_base64(),
        "session_id": session.session_id,
        "device_id": device_id,
    }


def decrypt_room_event(
    session: vodozemac.InboundGroupSession, *, room_id: str, content: Mapping[str, Any]
) -> dict[str, Any]:
    """The decrypted ``{"type", "content", "room_id"}`` of an ``m.room.encrypted`` event of ``room_id``.

    Raises :class:`~.errors.RoomEventDecryptionError` when the event uses another algorithm or session, when the
    session does not know the message's index or its signature fails, or when the plaintext is for another room.
    """
    if content.get("algorithm") != MEGOLM_ALGORITHM:
        raise RoomEventDecryptionError(f"the event is not encrypted with {MEGOLM_ALGORITHM}")
    if content.get("session_id") != session.session_id:
        raise RoomEventDecryptionError("the event was encrypted with another Megolm session")
    ciphertext = content.get("ciphertext")
    if not isinstance(ciphertext, str):
        raise RoomEventDecryptionError("the event has no string 'ciphertext'")
    try:
        decrypted = session.decrypt(vodozemac.MegolmMessage.from_base64(ciphertext))
    except (vodozemac.DecodeException, vodozemac.MegolmDecryptionException) as error:
        # vodozemac's messages name indices and versions, never key material.
        raise RoomEventDecryptionError(f"the event does not decrypt: {error}") from None
    try:
        payload = json.loads(decrypted.plaintext)
    except (UnicodeDecodeError, ValueError):
        raise RoomEventDecryptionError("the decrypted event is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise RoomEventDecryptionError("the decrypted event has no 'type'")
    if not isinstance(payload.get("content"), dict):
        raise RoomEventDecryptionError("the decrypted event has no 'content' object")
    if payload.get("room_id") != room_id:
        raise RoomEventDecryptionError("the decrypted event belongs to another room")
    return payload
