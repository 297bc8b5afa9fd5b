"""Room keys in the key backup (m.megolm_backup.v1.curve25519-aes-sha2) and the Megolm events they open.

Besides round trips, the backup encryption is checked both ways against vodozemac's ``PkEncryption`` /
``PkDecryption`` used directly, and against the spec's algorithm written out here with ``cryptography``
(X25519, HKDF-SHA-256 with a zero salt and empty info, AES-256-CBC with PKCS#7, and libolm's MAC: the first
8 bytes of HMAC-SHA-256 over an empty string).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import vodozemac
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qrlink_client._b64 import b64decode, b64encode
from qrlink_client.e2ee import (
    MEGOLM_ALGORITHM,
    BackedUpRoomKey,
    BackupKey,
    RoomEventDecryptionError,
    RoomKeyBackupError,
    decrypt_room_event,
    decrypt_room_key,
    encrypt_room_event,
    encrypt_room_key,
    key_backup_data,
    room_keys_from_backup,
)

ROOM = "!history:localhost"
SENDER_KEY = "Jl6C4Ke6hYk0M8E2Xm0P1bbh8nQ9Kw8Z6m5JW6cZx1s"
SENDER_ED25519 = "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI"


def room_key() -> tuple[vodozemac.GroupSession, BackedUpRoomKey]:
    outbound = vodozemac.GroupSession()
    inbound = vodozemac.InboundGroupSession(outbound.session_key)
    return outbound, BackedUpRoomKey.from_inbound_session(inbound, sender_key=SENDER_KEY, sender_ed25519=SENDER_ED25519)


# --- the spec's algorithm, written out independently of vodozemac ---------------------------------------------


def _subkeys(shared: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=80, salt=bytes(32), info=b"").derive(shared)
    return okm[:32], okm[32:64], okm[64:]


def _libolm_mac(mac_key: bytes) -> bytes:
    tag = hmac.HMAC(mac_key, hashes.SHA256())
    tag.update(b"")  # the MAC covers an empty string, not the ciphertext (libolm's bug, now the standard)
    return tag.finalize()[:8]


def spec_decrypt(private_key: bytes, session_data: dict[str, str]) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(private_key).exchange(
        X25519PublicKey.from_public_bytes(b64decode(session_data["ephemeral"]))
    )
    aes_key, mac_key, iv = _subkeys(shared)
    assert b64decode(session_data["mac"]) == _libolm_mac(mac_key)
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(b64decode(session_data["ciphertext"])) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def spec_encrypt(public_key: bytes, plaintext: bytes) -> dict[str, str]:
    ephemeral = X25519PrivateKey.generate()
    aes_key, mac_key, iv = _subkeys(ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key)))
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    return {
        "ephemeral": b64encode(ephemeral.public_key().public_bytes_raw()),
        "ciphertext": b64encode(ciphertext),
        "mac": b64encode(_libolm_mac(mac_key)),
    }


# --- backup encryption ----------------------------------------------------------------------------------------


def test_a_room_key_round_trips_through_the_backup_encryption() -> None:
    backup = BackupKey.generate()
    _, key = room_key()

    session_data = encrypt_room_key(backup.public_key_base64, key)

    assert set(session_data) == {"ephemeral", "ciphertext", "mac"}
    assert decrypt_room_key(backup, session_data) == key


def test_the_public_key_may_be_given_as_raw_bytes() -> None:
    backup = BackupKey.generate()
    _, key = room_key()

    assert decrypt_room_key(backup, encrypt_room_key(backup.public_key, key)) == key


def test_the_plaintext_is_the_specs_backed_up_session_data() -> None:
    backup = BackupKey.generate()
    _, key = room_key()

    plaintext = json.loads(spec_decrypt(backup.private_key(), encrypt_room_key(backup.public_key, key)))

    assert plaintext == {
        "algorithm": "m.megolm.v1.aes-sha2",
        "forwarding_curve25519_key_chain": [],
        "sender_claimed_keys": {"ed25519": SENDER_ED25519},
        "sender_key": SENDER_KEY,
        "session_key": key.session_key,
    }


def test_vodozemac_pk_decryption_reads_what_we_encrypt() -> None:
    backup = BackupKey.generate()
    _, key = room_key()
    session_data = encrypt_room_key(backup.public_key, key)

    message = vodozemac.Message(
        b64decode(session_data["ciphertext"]), b64decode(session_data["mac"]), b64decode(session_data["ephemeral"])
    )
    decryption = vodozemac.PkDecryption.from_key(vodozemac.Curve25519SecretKey.from_bytes(backup.private_key()))

    assert json.loads(decryption.decrypt(message)) == key.to_json()


def test_we_read_what_vodozemac_pk_encryption_encrypts() -> None:
    backup = BackupKey.generate()
    _, key = room_key()
    encryption = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_bytes(backup.public_key))
    message = encryption.encrypt(json.dumps(key.to_json()).encode())

    session_data = {
        "ephemeral": b64encode(message.ephemeral_key),
        "ciphertext": b64encode(message.ciphertext),
        "mac": b64encode(message.mac),
    }

    assert decrypt_room_key(backup, session_data) == key


def test_we_read_the_specs_algorithm_written_out_independently() -> None:
    backup = BackupKey.generate()
    _, key = room_key()

    assert decrypt_room_key(backup, spec_encrypt(backup.public_key, json.dumps(key.to_json()).encode())) == key


def test_the_mac_is_the_truncated_hmac_of_an_empty_string() -> None:
    # libolm's quirk, kept by every implementation: the MAC proves the key, not the ciphertext.
    backup = BackupKey.generate()
    session_data = encrypt_room_key(backup.public_key, room_key()[1])
    _, mac_key, _ = _subkeys(
        X25519PrivateKey.from_private_bytes(backup.private_key()).exchange(
            X25519PublicKey.from_public_bytes(b64decode(session_data["ephemeral"]))
        )
    )

    assert b64decode(session_data["mac"]) == _libolm_mac(mac_key)


def test_another_backup_key_fails_with_a_mac_mismatch_and_no_key_material_in_the_message() -> None:
    backup, other = BackupKey.generate(), BackupKey.generate()
    _, key = room_key()
    session_data = encrypt_room_key(backup.public_key, key)

    with pytest.raises(RoomKeyBackupError, match="MAC mismatch") as caught:
        decrypt_room_key(other, session_data)

    message = str(caught.value)
    for secret in (other.private_key_base64(), backup.private_key_base64(), key.session_key):
        assert secret not in message


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"mac": None}, "no string 'mac'"),
        ({"ephemeral": "not base64!"}, r"session_data.ephemeral is not valid base64"),
        ({"ephemeral": b64encode(b"short")}, "ephemeral is 5 bytes"),
        ({"mac": b64encode(bytes(32))}, "mac is 32 bytes"),
        # The v1 MAC covers no ciphertext (libolm's quirk), so only a length that cannot be AES-CBC output fails
        # for certain: 16 arbitrary bytes decrypt to valid padding once in 256 tries.
        ({"ciphertext": b64encode(bytes(15))}, "does not decrypt"),
    ],
)
def test_malformed_session_data_is_refused(change: dict[str, Any], match: str) -> None:
    backup = BackupKey.generate()
    session_data: dict[str, Any] = dict(encrypt_room_key(backup.public_key, room_key()[1]))
    for name, value in change.items():
        if value is None:
            del session_data[name]
        else:
            session_data[name] = value

    with pytest.raises(RoomKeyBackupError, match=match):
        decrypt_room_key(backup, session_data)


def test_a_plaintext_that_is_not_a_session_is_refused() -> None:
    backup = BackupKey.generate()

    with pytest.raises(RoomKeyBackupError, match="has no string 'sender_key'"):
        decrypt_room_key(backup, spec_encrypt(backup.public_key, b'{"algorithm": "m.megolm.v1.aes-sha2"}'))


def test_a_bad_public_key_is_refused() -> None:
    with pytest.raises(RoomKeyBackupError, match="32 bytes"):
        encrypt_room_key(bytes(31), room_key()[1])


def test_repr_hides_the_session_key() -> None:
    _, key = room_key()

    assert key.session_key not in repr(key)
    assert SENDER_KEY in repr(key)


def test_key_backup_data_is_the_put_body() -> None:
    session_data = {"ephemeral": "e", "ciphertext": "c", "mac": "m"}

    assert key_backup_data(session_data, first_message_index=0, is_verified=True) == {
        "first_message_index": 0,
        "forwarded_count": 0,
        "is_verified": True,
        "session_data": session_data,
    }


def test_every_session_of_a_backup_response_is_decrypted() -> None:
    backup = BackupKey.generate()
    (_, first), (_, second) = room_key(), room_key()
    response = {
        "rooms": {
            ROOM: {
                "sessions": {
                    "s1": key_backup_data(encrypt_room_key(backup.public_key, first), first_message_index=0),
                    "s2": key_backup_data(encrypt_room_key(backup.public_key, second), first_message_index=0),
                }
            }
        }
    }

    assert room_keys_from_backup(backup, response) == {(ROOM, "s1"): first, (ROOM, "s2"): second}


def test_a_backup_response_without_rooms_is_refused() -> None:
    with pytest.raises(RoomKeyBackupError, match="'rooms'"):
        room_keys_from_backup(BackupKey.generate(), {})


# --- Megolm events --------------------------------------------------------------------------------------------


def encrypted_event(outbound: vodozemac.GroupSession, room_id: str = ROOM) -> dict[str, Any]:
    return encrypt_room_event(
        outbound,
        room_id=room_id,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": "sent before the desktop existed"},
        sender_key=SENDER_KEY,
        device_id="PHONE",
    )


def test_an_encrypted_event_names_algorithm_sender_session_and_device() -> None:
    outbound, _ = room_key()

    content = encrypted_event(outbound)

    assert set(content) == {"algorithm", "sender_key", "ciphertext", "session_id", "device_id"}
    assert (content["algorithm"], content["sender_key"], content["session_id"], content["device_id"]) == (
        MEGOLM_ALGORITHM,
        SENDER_KEY,
        outbound.session_id,
        "PHONE",
    )


def test_a_key_restored_from_the_backup_decrypts_the_event() -> None:
    backup = BackupKey.generate()
    outbound, key = room_key()
    content = encrypted_event(outbound)

    restored = decrypt_room_key(backup, encrypt_room_key(backup.public_key, key))
    payload = decrypt_room_event(restored.inbound_session(), room_id=ROOM, content=content)

    assert payload == {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "sent before the desktop existed"},
        "room_id": ROOM,
    }


def test_an_event_replayed_into_another_room_is_refused() -> None:
    outbound, key = room_key()
    content = encrypted_event(outbound, room_id="!elsewhere:localhost")

    with pytest.raises(RoomEventDecryptionError, match="another room"):
        decrypt_room_event(key.inbound_session(), room_id=ROOM, content=content)


def test_an_event_of_another_session_is_refused() -> None:
    outbound, _ = room_key()
    _, other = room_key()

    with pytest.raises(RoomEventDecryptionError, match="another Megolm session"):
        decrypt_room_event(other.inbound_session(), room_id=ROOM, content=encrypted_event(outbound))


def test_a_message_before_the_keys_first_index_is_refused() -> None:
    outbound = vodozemac.GroupSession()
    early = encrypted_event(outbound)  # index 0
    inbound = vodozemac.InboundGroupSession(outbound.session_key)  # knows index 1 onwards
    key = BackedUpRoomKey.from_inbound_session(inbound, sender_key=SENDER_KEY, sender_ed25519=SENDER_ED25519)

    with pytest.raises(RoomEventDecryptionError, match="does not decrypt"):
        decrypt_room_event(key.inbound_session(), room_id=ROOM, content=early)


def test_a_session_key_that_is_not_an_export_is_refused() -> None:
    key = BackedUpRoomKey(session_key=b64encode(secrets.token_bytes(40)), sender_key="k", sender_claimed_keys={})

    with pytest.raises(RoomKeyBackupError, match="not a Megolm session export"):
        key.inbound_session()
