"""The E2EE half of a QR login, without the QR code: `qrlink_client.e2ee` on both devices.

The existing device sets up cross-signing, a key backup and secret storage for a fresh user (`bootstrap_user`),
reads the secrets back with the recovery key (`SecretStorageSecrets`) as the `m.login.secrets` content, and
writes one encrypted message whose room key it backs up. The new device checks the secrets against the
homeserver and publishes its cross-signed keys (`publish_new_device`), then restores the room key from the
backup and decrypts the message. In a real login the content travels in `m.login.secrets` over the secure
channel (`login_new_device` / `grant_login` do all of this).

Against the development stack, with two devices of a user who has no cross-signing yet:

    python -m devstack create-user bob builder
    python -m devstack login-device bob PHONE       # export QRLINK_ACCESS_TOKEN=<its access_token>
    python -m devstack login-device bob LAPTOP      # export QRLINK_NEW_DEVICE_TOKEN=<its access_token>
    python examples/e2ee_handover.py                # prints the recovery key
    python -m devstack login-device bob DESKTOP     # another new device: export QRLINK_NEW_DEVICE_TOKEN=<…>
    QRLINK_RECOVERY_KEY=... python examples/e2ee_handover.py

Elsewhere pass --homeserver or set QRLINK_HOMESERVER. Needs the e2ee extra: pip install 'qrlink[e2ee]'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import vodozemac

from qrlink_client.e2ee import (
    ENCRYPTED_EVENT_TYPE,
    MEGOLM_ALGORITHM,
    BackedUpRoomKey,
    E2eeError,
    E2eeHomeserver,
    OlmDevice,
    SecretsBundle,
    SecretsSource,
    SecretStorageSecrets,
    bootstrap_user,
    decrypt_room_event,
    encrypt_room_event,
    encrypt_room_key,
    key_backup_data,
    publish_new_device,
    room_keys_from_backup,
)


def devstack_state() -> dict[str, Any]:
    """What `python -m devstack up` recorded (URLs of the running stack), or {} when none runs."""
    cache = Path(os.environ.get("QRLINK_CACHE") or Path.home() / ".cache" / "qrlink")
    try:
        state: dict[str, Any] = json.loads((cache / "devstack-state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Hand a user's secrets to a new device and publish it.")
    parser.add_argument(
        "--homeserver",
        default=os.environ.get("QRLINK_HOMESERVER") or devstack_state().get("homeserver_url"),
        help="homeserver base URL (default: $QRLINK_HOMESERVER, else the dev stack's)",
    )
    parser.add_argument("--access-token", default=os.environ.get("QRLINK_ACCESS_TOKEN"), help="the existing device")
    parser.add_argument("--new-device-token", default=os.environ.get("QRLINK_NEW_DEVICE_TOKEN"), help="the new one")
    parser.add_argument(
        "--recovery-key",
        default=os.environ.get("QRLINK_RECOVERY_KEY") or None,
        help="unlocks the user's secret storage (default: $QRLINK_RECOVERY_KEY; without it, set it up first)",
    )
    return parser.parse_args()


async def existing_device(hs: E2eeHomeserver, recovery_key: str | None) -> tuple[dict[str, Any], str]:
    """The `m.login.secrets` content, and the ID of a room with an encrypted message whose key is backed up."""
    me = await hs.whoami()
    device = OlmDevice.generate(me["device_id"])
    if not recovery_key:
        result = await bootstrap_user(hs, device)  # refuses a user who already has cross-signing
        recovery_key = result.recovery_key()
        print(f"Cross-signing set up for {me['user_id']}; recovery key: {recovery_key}")

    source: SecretsSource = SecretStorageSecrets(recovery_key, hs)  # or StaticSecrets(bundle)
    bundle = await source.load_bundle()
    content = bundle.to_content()  # {"cross_signing": {...}, "backup": {...}}: the flow layer adds "type"

    # History a new device cannot read without the backup key: one message, its room key in the backup.
    room_id = await hs.create_room(
        {"initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM_ALGORITHM}}]}
    )
    outbound = vodozemac.GroupSession()
    inbound = vodozemac.InboundGroupSession(outbound.session_key)  # the sender's own copy
    message = {"msgtype": "m.text", "body": "written before the new device existed"}
    encrypted = encrypt_room_event(
        outbound,
        room_id=room_id,
        event_type="m.room.message",
        content=message,
        sender_key=device.curve25519_key,
        device_id=device.device_id,
    )
    await hs.send_event(room_id, ENCRYPTED_EVENT_TYPE, encrypted, secrets.token_hex(8))
    key = BackedUpRoomKey.from_inbound_session(
        inbound, sender_key=device.curve25519_key, sender_ed25519=device.ed25519_key
    )
    version = await hs.get_backup_version()  # auth_data.public_key, version
    assert version is not None, "bootstrap_user created a backup"
    session_data = encrypt_room_key(version["auth_data"]["public_key"], key)
    backup_data = key_backup_data(session_data, first_message_index=inbound.first_known_index, is_verified=True)
    await hs.put_room_key(version["version"], room_id, outbound.session_id, backup_data)
    return content, room_id


async def new_device(hs: E2eeHomeserver, received: dict[str, Any], room_id: str) -> None:
    """Check the secrets, publish the device, read the history."""
    me = await hs.whoami()
    device = OlmDevice.generate(me["device_id"])  # in a QR login: OlmDevice.generate(), the ID its identity key
    bundle = SecretsBundle.from_content(received)  # accepts "backup": null or absent
    await publish_new_device(hs, device, bundle)  # /keys/query + room_keys/version checks, then one /keys/upload
    pickle = device.pickle(secrets.token_bytes(32))  # keep the key: OlmDevice.from_pickle(pickle, key, device_id=…)
    print(f"Published device {device.device_id}, cross-signed; its account pickle is {len(pickle)} characters")

    assert bundle.backup is not None, "the user has a key backup"
    keys = room_keys_from_backup(bundle.backup.key, await hs.get_room_keys(bundle.backup.backup_version))
    for event in await hs.room_messages(room_id, types=[ENCRYPTED_EVENT_TYPE]):
        key = keys[(room_id, event["content"]["session_id"])]
        payload = decrypt_room_event(key.inbound_session(), room_id=room_id, content=event["content"])
        print(f"Read from the backup: {payload['content']['body']}")


async def main() -> int:
    args = parse_args()
    if not (args.homeserver and args.access_token and args.new_device_token):
        sys.exit("needs --homeserver (or the dev stack), --access-token and --new-device-token")
    async with (
        E2eeHomeserver(args.homeserver, args.access_token) as existing,
        E2eeHomeserver(args.homeserver, args.new_device_token) as new,
    ):
        try:
            content, room_id = await existing_device(existing, args.recovery_key)
            await new_device(new, content, room_id)
        except E2eeError as error:
            print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
