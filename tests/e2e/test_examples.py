"""The scripts in ``examples/`` run as written, against a development stack.

The stack's state file is written where the examples look for it (``$QRLINK_CACHE/devstack-state.json``), so
they run with their default URLs, as after ``python -m devstack up``. The new-device and existing-device
examples run as two processes against each other: one prints the QR payload, the test hands it to the other's
``--scan``, types the check code the scanner prints into the process that showed the code, and approves the
new device on the verification page the existing device prints. Both must succeed, and Synapse must list the
new device with the self-signing key's signature.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import DevStack
from devstack.__main__ import _state_file
from devstack.browser import answer_verification_page
from devstack.users import E2eeUser, create_e2ee_user
from qrlink_client.e2ee import AlreadyBootstrapped, E2eeHomeserver, OlmDevice, bootstrap_user, verify_json
from qrlink_client.qr import Gen1QrCode, Gen2QrCode, decode_qr
from tests.cli._process import Qrlink

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(180)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QR_PAYLOAD = r"^QR code payload \(base64\): (\S+)"
CHECK_CODE = r"check code: (\d\d)$"
APPROVE_AT = r"^Open this URL to approve the new device: (\S+)$"
SIGNED_IN = r"^Signed in as (\S+), device (\S+), at "


@pytest.fixture(scope="module")
def cache(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``$QRLINK_CACHE`` folder holding the state file ``python -m devstack up`` would write for ``stack``."""
    folder = tmp_path_factory.mktemp("qrlink-cache")
    with _state_file(folder / "devstack-state.json", stack):
        yield folder


def example(name: str, *args: str, cache: Path, env: dict[str, str] | None = None) -> Qrlink:
    environment = {"QRLINK_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
    for variable in ("QRLINK_HOMESERVER", "QRLINK_RENDEZVOUS", "QRLINK_ACCESS_TOKEN", "QRLINK_RECOVERY_KEY"):
        if variable not in environment:
            environment[variable] = ""  # the defaults must come from the state file
    return Qrlink(list(args), env=environment, program=[sys.executable, str(EXAMPLES / name)])


def credentials(user: E2eeUser) -> dict[str, str]:
    return {"QRLINK_ACCESS_TOKEN": user.access_token, "QRLINK_RECOVERY_KEY": user.recovery_key}


def run_pair(cache: Path, user: E2eeUser, *, new_device_shows: bool, gen: int) -> tuple[Qrlink, Qrlink]:
    """Both examples against each other; returns (new device, existing device) after both ended."""
    if new_device_shows:
        shower = new = example("new_device.py", "--gen", str(gen), cache=cache)
        qr = new.wait_for(QR_PAYLOAD, stream="stdout").group(1)
        scanner = existing = example(
            "existing_device.py", "--no-browser", "--scan", qr, cache=cache, env=credentials(user)
        )
    else:
        shower = existing = example(
            "existing_device.py", "--no-browser", "--gen", str(gen), cache=cache, env=credentials(user)
        )
        qr = existing.wait_for(QR_PAYLOAD, stream="stdout").group(1)
        scanner = new = example("new_device.py", "--scan", qr, cache=cache)
    try:
        shower.answer(scanner.wait_for(CHECK_CODE, stream="stdout").group(1))
        uri = existing.wait_for(APPROVE_AT, stream="stdout").group(1)
        asyncio.run(answer_verification_page(uri, localpart=user.localpart, password=user.password))
        statuses = new.finish(), existing.finish()
    finally:
        new.kill()
        existing.kill()
    assert statuses == (0, 0), new.output() + existing.output()
    decoded = decode_qr(base64.b64decode(qr))
    assert isinstance(decoded, Gen1QrCode if gen == 1 else Gen2QrCode)
    return new, existing


def assert_cross_signed(stack: DevStack, user_id: str, access_token: str, device_id: str) -> None:
    async def query() -> dict[str, Any]:
        async with E2eeHomeserver(stack.homeserver_url, access_token) as homeserver:
            return await homeserver.query_keys([user_id])

    keys = asyncio.run(query())
    ((key_id, public_key),) = keys["self_signing_keys"][user_id]["keys"].items()
    device_keys = keys["device_keys"][user_id][device_id]
    verify_json(device_keys, signer_id=user_id, key_id=key_id, public_key=public_key)


@pytest.mark.parametrize(
    ("new_device_shows", "gen"), [(True, 1), (False, 2)], ids=["new-device-shows-gen1", "existing-shows-gen2"]
)
def test_the_device_examples_sign_a_new_device_in_and_it_is_cross_signed(
    stack: DevStack, cache: Path, new_device_shows: bool, gen: int
) -> None:
    user = asyncio.run(create_e2ee_user(stack, prefix="example"))

    new, existing = run_pair(cache, user, new_device_shows=new_device_shows, gen=gen)

    signed_in = new.wait_for(SIGNED_IN, stream="stdout")
    assert signed_in.group(1) == user.user_id
    device_id = signed_in.group(2)
    assert f"Signed in the new device {device_id} and sent it the secrets" in existing.stdout
    assert any("s left)" in line for line in new.stdout)  # progress shows the time left
    assert_cross_signed(stack, user.user_id, user.access_token, device_id)


def test_the_secure_channel_example_exchanges_messages(cache: Path) -> None:
    run = example("secure_channel.py", cache=cache)
    status = run.finish()

    assert status == 0, run.output()
    assert "A received: hello from B" in run.stdout
    assert "B received: hello back from A" in run.stdout
    assert run.stdout[-1] == "Done"


def test_the_state_file_names_the_rendezvous_urls(stack: DevStack, cache: Path) -> None:
    path = cache / "devstack-state.json"
    state = json.loads(path.read_text())

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert state["homeserver_url"] == stack.homeserver_url
    assert state["rendezvous_url"] == stack.rendezvous_url
    assert state["gen1_rendezvous_create_url"] == (
        f"{str(stack.rendezvous_url).rstrip('/')}/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
    )
    assert state["server_name"] == stack.server_name


def test_bootstrapping_an_existing_user_again_explains_itself(stack: DevStack, cache: Path) -> None:
    user = asyncio.run(create_e2ee_user(stack, prefix="again"))

    run = example("existing_device.py", "--bootstrap", cache=cache, env=credentials(user))

    assert run.finish() == 1
    assert any(
        line.startswith(f"Failed: AlreadyBootstrapped: {user.user_id} already has cross-signing keys")
        for line in run.stderr
    ), run.output()


def test_replacing_cross_signing_on_the_oauth_stack_names_the_approval_page(stack: DevStack) -> None:
    from qrlink_client.e2ee import UserInteractiveAuthRequired

    user = asyncio.run(create_e2ee_user(stack, prefix="replace"))

    async def bootstrap_again(auth: dict[str, Any] | None) -> None:
        async with E2eeHomeserver(stack.homeserver_url, user.access_token) as homeserver:
            await bootstrap_user(homeserver, OlmDevice.generate(user.device_id), auth=auth, upload_device_keys=False)

    with pytest.raises(AlreadyBootstrapped):
        asyncio.run(bootstrap_again(None))
    with pytest.raises(UserInteractiveAuthRequired) as caught:
        asyncio.run(bootstrap_again({}))
    assert caught.value.oauth_url == f"{stack.issuer}account?action=org.matrix.cross_signing_reset"
    offered = "the server offers: m.oauth or org.matrix.cross_signing_reset"
    assert f"{offered}; approve at {caught.value.oauth_url}" in str(caught.value)


def test_the_device_grant_example_signs_a_device_in_once_approved(stack: DevStack, cache: Path) -> None:
    localpart, password = f"grant-{os.urandom(4).hex()}", os.urandom(8).hex()
    stack.create_user(localpart, password)
    run = example("device_grant.py", "--device-id", "GRANTEXAMPLE", cache=cache)
    try:
        uri = run.wait_for(APPROVE_AT, stream="stdout").group(1)
        asyncio.run(answer_verification_page(uri, localpart=localpart, password=password))
        status = run.finish()
    finally:
        run.kill()

    assert status == 0, run.output()
    assert run.stdout[-1] == f"Signed in as @{localpart}:{stack.server_name}, device GRANTEXAMPLE"


def test_the_e2ee_example_publishes_the_new_device_and_reads_the_backed_up_history(
    stack: DevStack, cache: Path
) -> None:
    localpart = f"handover-{os.urandom(4).hex()}"
    stack.create_user(localpart, "secret")
    phone, laptop = stack.login_device(localpart, "PHONE"), stack.login_device(localpart, "LAPTOP")
    tokens = {"QRLINK_ACCESS_TOKEN": phone.access_token, "QRLINK_NEW_DEVICE_TOKEN": laptop.access_token}

    first = example("e2ee_handover.py", cache=cache, env=tokens)
    assert first.finish() == 0, first.output()
    recovery_key = first.wait_for(r"recovery key: (.+)$", stream="stdout").group(1)
    assert "Read from the backup: written before the new device existed" in first.stdout
    assert_cross_signed(stack, phone.user_id, phone.access_token, "LAPTOP")

    # A later run, for another new device, unlocks the secret storage with the recovery key instead.
    tokens["QRLINK_NEW_DEVICE_TOKEN"] = stack.login_device(localpart, "DESKTOP").access_token
    again = example("e2ee_handover.py", cache=cache, env={**tokens, "QRLINK_RECOVERY_KEY": recovery_key})
    assert again.finish() == 0, again.output()
    assert not any("recovery key" in line for line in again.stdout)
    assert_cross_signed(stack, phone.user_id, phone.access_token, "DESKTOP")


def test_the_transports_example_moves_messages_in_both_generations(cache: Path) -> None:
    run = example("transports.py", cache=cache)
    status = run.finish()

    assert status == 0, run.output()
    assert "Gen-1: G received 'initiate'" in run.stdout
    assert "Gen-1: S received 'ok'" in run.stdout
    assert any(line.startswith("Gen-2: G received b'hello from S'") for line in run.stdout), run.output()
    assert run.stdout[-1] == "Done"
