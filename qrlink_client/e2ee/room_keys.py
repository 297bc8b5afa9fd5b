"""Room keys in the server-side key backup, ``m.megolm_backup.v1.curve25519-aes-sha2`` (spec "Server-side key
backups").

A client backs up each Megolm session it can decrypt with: the session's export (:class:`BackedUpRoomKey`, the
spec's ``BackedUpSessionData``) is encrypted to the backup's Curve25519 public key and stored with
``PUT /room_keys/keys/{roomId}/{sessionId}?version=``. Any device holding the backup private key (from secret
storage, or from ``m.login.secrets`` after a QR login) restores it with ``GET /room_keys/keys?version=`` and can
then read the room's history.

The scheme, as the spec and libolm define it:

1. an ephemeral Curve25519 key pair; ECDH with the backup public key;
2. HKDF-SHA-256 of the shared secret, salt 32 zero bytes, empty info, 80 bytes: AES key (32), MAC key (32),
   AES IV (16);
3. the session JSON encrypted with AES-256-**CBC** and PKCS#7 padding;
4. ``mac``: the first 8 bytes of HMAC-SHA-256 with the MAC key over an **empty** string (libolm's bug, which every
   implementation now reproduces; the MAC checks that the right key was used, not the ciphertext).

vodozemac's ``PkEncryption`` / ``PkDecryption`` implement exactly that (libolm-compatible), so this module wraps
them instead of doing the cryptography by hand. Everything here is pure: the HTTP calls are
:meth:`~.homeserver.E2eeHomeserver.put_room_key` and :meth:`~.homeserver.E2eeHomeserver.get_room_keys`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from .._b64 import InvalidBase64, b64decode, b64encode
from .backup import BackupKey
from .errors import RoomKeyBackupError

__all__ = [
    "MEGOLM_ALGORITHM",
    "BackedUpRoomKey",
    "decrypt_room_key",
    "encrypt_room_key",
    "key_backup_data",
    "room_keys_from_backup",
]

MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"
"""The room encryption algorithm whose sessions the backup holds."""

_MAC_LENGTH = 8  # libolm's truncated MAC
_KEY_LENGTH = 32


@dataclass(frozen=True)
class BackedUpRoomKey:
    """One Megolm session as the backup stores it (``BackedUpSessionData``). ``repr`` hides the session key.

    :attr:`session_key` is the *exported* session key (vodozemac ``ExportedSessionKey``, the format of
    ``InboundGroupSession.export_at``): whoever holds it decrypts the room's messages from its index on.
    """

    session_key: str = field(repr=False)
    sender_key: str
    """The Curve25519 identity key of the device that created the session."""
    sender_claimed_keys: Mapping[str, str]
    """At least ``{"ed25519": <that device's Ed25519 key>}``."""
    algorithm: str = MEGOLM_ALGORITHM
    forwarding_curve25519_key_chain: tuple[str, ...] = ()

    @classmethod
    def from_inbound_session(
        cls, session: vodozemac.InboundGroupSession, *, sender_key: str, sender_ed25519: str
    ) -> BackedUpRoomKey:
        """The backup entry of ``session``, exported at its first known index, for a session created by the
        device with identity keys ``sender_key`` (Curve25519) and ``sender_ed25519``."""
        exported = session.export_at(session.first_known_index)
        if exported is None:  # pragma: no cover - a session can always export its first known index
            raise RoomKeyBackupError("the session cannot be exported at its first known index")
        return cls(
            session_key=exported.to_base64(),
            sender_key=sender_key,
            sender_claimed_keys={"ed25519": sender_ed25519},
        )

    def inbound_session(self) -> vodozemac.InboundGroupSession:
        """The inbound Megolm session this key restores (``InboundGroupSession.import_session``)."""
        try:
            return vodozemac.InboundGroupSession.import_session(vodozemac.ExportedSessionKey(self.session_key))
        except (ValueError, vodozemac.SessionKeyDecodeException):
            raise RoomKeyBackupError("the backed-up session_key is not a Megolm session export") from None

    def to_json(self) -> dict[str, Any]:
        """The plaintext JSON object that is encrypted into ``session_data``. Secret."""
        return {
            "algorithm": self.algorithm,
            "forwarding_curve25519_key_chain": list(self.forwarding_curve25519_key_chain),
            "sender_claimed_keys": dict(self.sender_claimed_keys),
            "sender_key": self.sender_key,
            "session_key": self.session_key,
        }

    @classmethod
    def from_json(cls, data: object) -> BackedUpRoomKey:
        """Parse a decrypted ``BackedUpSessionData``; raises :class:`RoomKeyBackupError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise RoomKeyBackupError("the backed-up session is not a JSON object")
        for name in ("algorithm", "sender_key", "session_key"):
            if not isinstance(data.get(name), str):
                raise RoomKeyBackupError(f"the backed-up session has no string {name!r}")
        claimed = data.get("sender_claimed_keys", {})
        if not isinstance(claimed, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in claimed.items()
        ):
            raise RoomKeyBackupError("the backed-up session's 'sender_claimed_keys' is not an object of strings")
        chain = data.get("forwarding_curve25519_key_chain", [])
        if not isinstance(chain, list) or not all(isinstance(k, str) for k in chain):
            raise RoomKeyBackupError(
                "the backed-up session's 'forwarding_curve25519_key_chain' is not a list of strings"
            )
        return cls(
            session_key=data["session_key"],
            sender_key=data["sender_key"],
            sender_claimed_keys=dict(claimed),
            algorithm=data["algorithm"],
            forwarding_curve25519_key_chain=tuple(chain),
        )


def encrypt_room_key(public_key: str | bytes, room_key: BackedUpRoomKey) -> dict[str, str]:
    """The ``session_data`` (``ephemeral``, ``ciphertext``, ``mac``, unpadded base64) of ``room_key``,
    encrypted to the backup public key (``auth_data.public_key``, as base64 or 32 raw bytes)."""
    try:
        raw = b64decode(public_key) if isinstance(public_key, str) else bytes(public_key)
    except InvalidBase64:
        raise RoomKeyBackupError("the backup public key is not valid base64") from None
    if len(raw) != _KEY_LENGTH:
        raise RoomKeyBackupError(f"the backup public key is {_KEY_LENGTH} bytes, got {len(raw)}")
    plaintext = json.dumps(room_key.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    message = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_bytes(raw)).encrypt(plaintext)
    return {
        "ephemeral": b64encode(message.ephemeral_key),
        "ciphertext": b64encode(message.ciphertext),
        "mac": b64encode(message.mac),
    }


def decrypt_room_key(backup_key: BackupKey, session_data: Mapping[str, Any]) -> BackedUpRoomKey:
    """Decrypt one ``session_data`` with the backup private key.

    Raises :class:`RoomKeyBackupError` when a field is missing or not base64, when the MAC does not match
    (another backup's key) or when the plaintext is not a backed-up Megolm session.
    """
    parts: dict[str, bytes] = {}
    for name in ("ephemeral", "ciphertext", "mac"):
        value = session_data.get(name)
        if not isinstance(value, str):
            raise RoomKeyBackupError(f"session_data has no string {name!r}")
        try:
            parts[name] = b64decode(value)
        except InvalidBase64:
            raise RoomKeyBackupError(f"session_data.{name} is not valid base64") from None
    if len(parts["ephemeral"]) != _KEY_LENGTH:
        raise RoomKeyBackupError(f"session_data.ephemeral is {len(parts['ephemeral'])} bytes, not {_KEY_LENGTH}")
    if len(parts["mac"]) != _MAC_LENGTH:
        raise RoomKeyBackupError(f"session_data.mac is {len(parts['mac'])} bytes, not {_MAC_LENGTH}")
    decryption = vodozemac.PkDecryption.from_key(vodozemac.Curve25519SecretKey.from_bytes(backup_key.private_key()))
    message = vodozemac.Message(parts["ciphertext"], parts["mac"], parts["ephemeral"])
    try:
        plaintext = decryption.decrypt(message)
    except vodozemac.PkDecodeException as error:
        # vodozemac says which check failed; its messages carry no key material or plaintext.
        what = "MAC mismatch (a different backup key?)" if "MAC" in str(error) else "invalid padding"
        raise RoomKeyBackupError(f"session_data does not decrypt with this backup key: {what}") from None
    try:
        data = json.loads(plaintext)
    except (UnicodeDecodeError, ValueError):
        raise RoomKeyBackupError("the decrypted session is not JSON") from None
    return BackedUpRoomKey.from_json(data)


def key_backup_data(
    session_data: Mapping[str, str],
    *,
    first_message_index: int,
    forwarded_count: int = 0,
    is_verified: bool = False,
) -> dict[str, Any]:
    """The ``KeyBackupData`` body of ``PUT /room_keys/keys/{roomId}/{sessionId}``.

    ``is_verified`` says whether the backing-up device trusted the session's sender (true for its own sessions).
    """
    return {
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": dict(session_data),
    }


def room_keys_from_backup(backup_key: BackupKey, response: Mapping[str, Any]) -> dict[tuple[str, str], BackedUpRoomKey]:
    """Decrypt every session of ``GET /room_keys/keys`` (``{"rooms": {room: {"sessions": {id: data}}}}``),
    keyed by ``(room_id, session_id)``. Raises :class:`RoomKeyBackupError` on the first entry that does not
    decrypt: with one backup key, all of them should."""
    rooms = response.get("rooms")
    if not isinstance(rooms, Mapping):
        raise RoomKeyBackupError("the backup response has no 'rooms' object")
    keys: dict[tuple[str, str], BackedUpRoomKey] = {}
    for room_id, room in rooms.items():
        sessions = room.get("sessions") if isinstance(room, Mapping) else None
        if not isinstance(sessions, Mapping):
            raise RoomKeyBackupError(f"the backup of room {room_id} has no 'sessions' object")
        for session_id, backup_data in sessions.items():
            session_data = backup_data.get("session_data") if isinstance(backup_data, Mapping) else None
            if not isinstance(session_data, Mapping):
                raise RoomKeyBackupError(f"session {session_id} of room {room_id} has no 'session_data'")
            keys[(room_id, session_id)] = decrypt_room_key(backup_key, session_data)
    return keys
