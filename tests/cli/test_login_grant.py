"""``qrlink login`` (new device) and ``qrlink grant`` (signed-in device) as two real child processes against one
development stack. The test plays the user: it reads the check code one process displays and types it into
the other, and approves the new device on the verification page over HTTP."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import DevStack
from devstack.demo import DemoUser, answer_verification_page, create_demo_user
from qrlink_client._b64 import b64decode
from qrlink_client.e2ee import OlmDevice
from qrlink_client.qr import Gen1QrCode, Gen2Layout, Gen2QrCode, decode_qr
from rendezvous.protocol import WHOAMI_PATH
from tests.cli._process import Qrlink
from tests.support.urls import under

#: Every wait on the two processes of one login ends by then; the pytest timeout (above a stack start plus this)
#: is a backstop.
LOGIN_WITHIN = 60.0  # a login takes about 5-10 s
pytestmark = [pytest.mark.synapse, pytest.mark.timeout(120)]

CHECK_CODE = r"secure channel established; check code: (\d\d)$"
APPROVE_AT = r"^open this URL to approve the new device: (\S+)$"


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack.start(poll_interval=1, rendezvous=True, start_timeout=30) as running:
        yield running


@dataclass(frozen=True)
class Exchange:
    """One login between the two commands, and what it left behind."""

    user: DemoUser
    login: Qrlink
    grant: Qrlink
    login_status: int
    grant_status: int
    qr: bytes
    session_file: Path
    pickle_key_file: Path

    def session(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.session_file.read_text())
        return document


def _exchange(stack: DevStack, folder: Path, *, login_shows: bool) -> Exchange:
    user = asyncio.run(create_demo_user(stack))
    session_file = folder / "session.json"
    secrets = {"QRLINK_ACCESS_TOKEN": user.access_token, "QRLINK_RECOVERY_KEY": user.recovery_key}
    login_args = ["login", "--session-file", str(session_file), "--homeserver", stack.homeserver_url]
    grant_args = ["grant", "--homeserver", stack.homeserver_url, "--no-browser", "--no-terminal-qr"]
    if login_shows:
        # Gen-1 with the rendezvous discovered from the homeserver's /versions (Synapse's own).
        shower = login = Qrlink([*login_args, "--gen", "1", "--print-qr-base64"], within=LOGIN_WITHIN)
        qr = login.wait_for(r"^(\S+)$", stream="stdout").group(1)
        scanner = grant = Qrlink([*grant_args, "--qr", qr], env=secrets, within=LOGIN_WITHIN)
    else:
        shower = grant = Qrlink(
            [*grant_args, "--show", "--gen", "2", "--print-qr-base64"], env=secrets, within=LOGIN_WITHIN
        )
        qr = grant.wait_for(r"^(\S+)$", stream="stdout").group(1)
        scanner = login = Qrlink([*login_args, "--scan", qr], within=LOGIN_WITHIN)
    try:
        shower.answer(scanner.wait_for(CHECK_CODE).group(1))
        uri = grant.wait_for(APPROVE_AT).group(1)
        asyncio.run(answer_verification_page(uri, localpart=user.localpart, password=user.password))
        login_status, grant_status = login.finish(), grant.finish()
    finally:
        login.kill()
        grant.kill()
    return Exchange(
        user, login, grant, login_status, grant_status, b64decode(qr), session_file, Path(f"{session_file}.pickle-key")
    )


@pytest.fixture(scope="module")
def login_shows(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Exchange:
    """``qrlink login`` shows a Gen-1 QR code, ``qrlink grant --qr`` scans it."""
    return _exchange(stack, tmp_path_factory.mktemp("login-shows"), login_shows=True)


@pytest.fixture(scope="module")
def grant_shows(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Exchange:
    """``qrlink grant --show`` shows a Gen-2 QR code, ``qrlink login --scan`` scans it."""
    return _exchange(stack, tmp_path_factory.mktemp("grant-shows"), login_shows=False)


@pytest.fixture(params=["login-shows", "grant-shows"])
def exchange(request: pytest.FixtureRequest) -> Exchange:
    fixture = "login_shows" if request.param == "login-shows" else "grant_shows"
    result: Exchange = request.getfixturevalue(fixture)
    return result


def test_both_commands_exit_with_status_0(exchange: Exchange) -> None:
    assert (exchange.login_status, exchange.grant_status) == (0, 0), exchange.login.output() + exchange.grant.output()


def test_printed_qr_payload_has_the_requested_generation(login_shows: Exchange, grant_shows: Exchange) -> None:
    assert isinstance(decode_qr(login_shows.qr), Gen1QrCode)
    assert isinstance(decode_qr(grant_shows.qr), Gen2QrCode)


def test_gen2_commands_use_and_name_element_xs_profile(login_shows: Exchange, grant_shows: Exchange) -> None:
    """``grant --show --gen 2`` shows Element X's layout; ``login --scan`` detects it; both print the profile."""
    code = decode_qr(grant_shows.qr)
    assert isinstance(code, Gen2QrCode) and code.layout is Gen2Layout.ELEMENT_X
    for process in (grant_shows.login, grant_shows.grant):
        assert "Gen-2 channel profile: element-x" in process.stderr
    assert not any("profile" in line for line in login_shows.login.stderr + login_shows.grant.stderr)


def test_login_shows_the_qr_code_in_the_terminal(login_shows: Exchange) -> None:
    assert any("\u2588" in line for line in login_shows.login.stderr)


def test_session_file_tokens_work_with_synapse_whoami(stack: DevStack, exchange: Exchange) -> None:
    session = exchange.session()

    response = httpx.get(
        under(stack.homeserver_url, WHOAMI_PATH),
        headers={"Authorization": f"Bearer {session['access_token']}"},
        trust_env=False,
    )

    assert response.status_code == 200
    assert response.json() == {"user_id": exchange.user.user_id, "device_id": session["device_id"], "is_guest": False}


def test_both_commands_print_the_same_device_id_as_their_last_line(exchange: Exchange) -> None:
    login_said, grant_said = json.loads(exchange.login.stdout[-1]), json.loads(exchange.grant.stdout[-1])

    assert login_said["device_id"] == grant_said["device_id"] == exchange.session()["device_id"]


def test_session_and_pickle_key_files_are_readable_by_the_owner_only(exchange: Exchange) -> None:
    modes = [stat.S_IMODE(path.stat().st_mode) for path in (exchange.session_file, exchange.pickle_key_file)]

    assert modes == [0o600, 0o600]


def test_pickled_account_opens_with_the_key_in_the_pickle_key_file(exchange: Exchange) -> None:
    session = exchange.session()
    key = b64decode(exchange.pickle_key_file.read_text().strip())

    device = OlmDevice.from_pickle(session["pickled_account"], key, device_id=session["device_id"])

    # With the default device ID, the ID is the account's own Curve25519 identity key.
    assert device.curve25519_key == session["device_id"]


def test_session_file_names_its_format_and_the_pickle_key_file(exchange: Exchange) -> None:
    session = exchange.session()

    assert session["format"] == "qrlink.session.v1"
    assert session["pickle_key_file"] == str(exchange.pickle_key_file.resolve())
    assert session["user_id"] == exchange.user.user_id


def test_the_new_device_is_cross_signed_on_synapse(stack: DevStack, exchange: Exchange) -> None:
    from qrlink_client.e2ee import E2eeHomeserver, verify_json

    session = exchange.session()

    async def query() -> dict[str, Any]:
        async with E2eeHomeserver(stack.homeserver_url, session["access_token"]) as homeserver:
            return await homeserver.query_keys([session["user_id"]])

    keys = asyncio.run(query())
    user = session["user_id"]
    ((key_id, public_key),) = keys["self_signing_keys"][user]["keys"].items()
    verify_json(keys["device_keys"][user][session["device_id"]], signer_id=user, key_id=key_id, public_key=public_key)
