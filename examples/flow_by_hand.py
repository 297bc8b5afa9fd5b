"""The two `m.login.*` state machines driven by hand, in one process, without a network.

The existing device shows the QR code, the new device scans it. A real Gen-1 secure channel encrypts every
message; a list stands in for the rendezvous session, and the driver answers the work actions (OAuth, the
homeserver, the user) itself. Each machine input returns actions; the driver carries them out in order, and
each work result goes back into the machine as an input (docs/flow.md). Needs the `e2ee` extra.

    python examples/flow_by_hand.py
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qrlink_client.channel import EciesChannel, SecureChannel
from qrlink_client.e2ee import BackupKey, BackupSecret, CrossSigningKeys, SecretsBundle
from qrlink_client.flow import (
    Action,
    CheckDeviceUnused,
    ExistingDeviceLogin,
    Failed,
    Homeserver,
    LoginMachine,
    NewDeviceLogin,
    OpenVerificationUri,
    PollToken,
    Progress,
    SendMessage,
    StartDeviceAuthorization,
    WaitForDevice,
)

HOMESERVER = "https://matrix.example.org/"


@dataclass(frozen=True)
class Grant:
    """What the OAuth server's device authorization endpoint answered (RFC 8628), as the machine needs it."""

    user_code: str = "WDJB-MJHT"
    verification_uri: str = "https://auth.example.org/link"
    verification_uri_complete: str | None = "https://auth.example.org/link?user_code=WDJB-MJHT"
    expires_in: float = 600.0


def main() -> int:
    secrets = SecretsBundle(cross_signing=CrossSigningKeys.generate(), backup=BackupSecret(BackupKey.generate(), "1"))
    new = NewDeviceLogin.scanning_qr("NEWDEVICE", Homeserver(base_url=HOMESERVER))
    existing = ExistingDeviceLogin.showing_qr(HOMESERVER, secrets, generation=1)
    channels: dict[str, SecureChannel] = {"new": EciesChannel.scanner(), "existing": EciesChannel.generator()}
    machines: dict[str, LoginMachine] = {"new": new, "existing": existing}
    inbox: dict[str, list[str]] = {"new": [], "existing": []}  # ciphertexts: the rendezvous session

    def run(name: str, actions: list[Action]) -> None:
        """Carry out `actions` of the machine `name`; work results go back in as inputs."""
        peer = "existing" if name == "new" else "new"
        for action in actions:
            now = time.monotonic()
            if isinstance(action, SendMessage):
                inbox[peer].append(channels[name].encrypt(action.message.to_json()))
            elif isinstance(action, Progress):
                print(f"{name:8}  {type(action).__name__}")
            elif isinstance(action, StartDeviceAuthorization):  # OAuth: discovery, registration, device grant
                run(name, new.device_authorization_ready(Grant(), now=now))
            elif isinstance(action, PollToken):  # the user approved: the token endpoint answers with tokens
                run(name, new.token_granted(now=now))
            elif isinstance(action, CheckDeviceUnused):  # GET /devices/{id} answered 404
                run(name, existing.device_absent(now=now))
            elif isinstance(action, OpenVerificationUri):  # the browser opened action.uri
                run(name, existing.verification_uri_opened(now=now))
            elif isinstance(action, WaitForDevice):  # GET /devices/{id} answers 200 now
                run(name, existing.device_appeared(now=now))
            if isinstance(action, Failed):
                print(f"{name:8}  Failed: {action.error!r}")

    run("new", new.start(now=time.monotonic()))
    run("existing", existing.start(now=time.monotonic()))

    # The handshake (docs/handshake.md): the scanner's LoginInitiate, the QR device's LoginOk.
    showing, scanning = channels["existing"], channels["new"]
    showing.accept_initiate(scanning.initiate(showing.public_key))
    scanning.accept_ok(showing.ok_message())
    run("existing", existing.channel_established(showing.check_code, now=time.monotonic()))
    run("new", new.channel_established(scanning.check_code, now=time.monotonic()))
    # The user reads the code on the new device (the scanner) and types it into the existing one.
    run("existing", existing.check_code_entered(scanning.check_code.digits, now=time.monotonic()))

    while not (new.finished and existing.finished):
        name = next((n for n in ("new", "existing") if inbox[n] and not machines[n].finished), None)
        if name is None:
            break
        plaintext = channels[name].decrypt(inbox[name].pop(0))
        run(name, machines[name].message_received(plaintext, now=time.monotonic()))

    for name, machine in machines.items():
        print(f"{name:8}  {machine.state.name}")
    return 0 if new.error is None and existing.error is None and new.finished and existing.finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
