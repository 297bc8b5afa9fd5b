"""Gen-2 sign in with QR code through our rendezvous server: the stack's homeserver URL is a front reverse
proxy that routes the rendezvous paths to our server and everything else to Synapse, the way an admin puts the
server in front of a homeserver (docs/deployment.md). Synapse's own MSC4388 endpoint is off on this stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack import DevStack
from devstack.browser import VerificationPage
from devstack.users import E2eeUser, create_e2ee_user
from qrlink_client.channel import HpkeProfile
from qrlink_client.flow import Progress
from qrlink_client.login import NewDeviceLoginResult
from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH
from tests.e2e.test_qr_login import assert_mixed_profiles_fail_fast, established, run_login
from tests.support.urls import under

pytestmark = pytest.mark.synapse

_GEN2_CREATED = re.compile(r'^rendezvous_sessions_created_total\{generation="gen2"\} (\S+)$', re.MULTILINE)

ROLES = [
    pytest.param(True, id="new-device-shows"),
    pytest.param(False, id="existing-device-shows"),
]


@dataclass(frozen=True)
class Login:
    user: E2eeUser
    new: NewDeviceLoginResult
    existing_saw: str
    gen2_sessions_created: float
    """How many Gen-2 sessions our rendezvous server created while this login ran."""
    new_progress: list[Progress]
    existing_progress: list[Progress]


def gen2_sessions_created(stack: DevStack) -> float:
    """Our rendezvous server's count of Gen-2 sessions created, from its Prometheus metrics."""
    assert stack.rendezvous_url is not None
    response = httpx.get(f"{stack.rendezvous_url}metrics", trust_env=False)
    response.raise_for_status()
    match = _GEN2_CREATED.search(response.text)
    assert match is not None, 'rendezvous_sessions_created_total{generation="gen2"} is missing'
    return float(match.group(1))


@pytest.fixture(scope="module")
def logins() -> dict[bool, Login]:
    """Each approved login once per module, keyed by whether the new device showed the QR code."""
    return {}


async def approved_login(stack: DevStack, cache: dict[bool, Login], new_device_shows: bool) -> Login:
    if new_device_shows not in cache:
        user = await create_e2ee_user(stack, prefix="e2e", device_id="EXISTING")
        before = gen2_sessions_created(stack)
        new, existing, new_sides, existing_sides = await run_login(
            stack,
            user,
            generation=2,
            new_device_shows=new_device_shows,
            page=VerificationPage(user, "approve"),
            show_profile=HpkeProfile.ELEMENT_X,
            waiting_for="both devices to end an approved Gen-2 login through our rendezvous server",
        )
        if isinstance(new, BaseException):
            raise new
        if isinstance(existing, BaseException):
            raise existing
        created = gen2_sessions_created(stack) - before
        cache[new_device_shows] = Login(user, new, existing, created, new_sides.progress, existing_sides.progress)
    return cache[new_device_shows]


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_both_devices_agree_on_the_new_device(front_stack: DevStack, logins: Any, new_device_shows: bool) -> None:
    login = await approved_login(front_stack, logins, new_device_shows)

    assert (login.new.user_id, login.new.device_id) == (login.user.user_id, login.existing_saw)


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_the_login_created_its_gen2_session_on_our_rendezvous_server(
    front_stack: DevStack, logins: Any, new_device_shows: bool
) -> None:
    login = await approved_login(front_stack, logins, new_device_shows)

    assert login.gen2_sessions_created == 1


@pytest.mark.parametrize("new_device_shows", ROLES)
async def test_both_devices_used_element_xs_profile(front_stack: DevStack, logins: Any, new_device_shows: bool) -> None:
    """Shown with element-x, detected by the scanner from the code's layout: all four roles (new/existing
    device, shows/scans) through our server."""
    login = await approved_login(front_stack, logins, new_device_shows)

    assert (established(login.new_progress).profile, established(login.existing_progress).profile) == (
        HpkeProfile.ELEMENT_X,
        HpkeProfile.ELEMENT_X,
    )


@pytest.mark.parametrize(
    ("new_device_shows", "shown", "scanning"),
    [
        pytest.param(True, HpkeProfile.ELEMENT_X, HpkeProfile.MSC, id="element-x-shown-msc4388-scans"),
        pytest.param(False, HpkeProfile.MSC, HpkeProfile.ELEMENT_X, id="msc4388-shown-element-x-scans"),
    ],
)
async def test_a_mixed_pair_fails_both_devices_within_seconds(
    front_stack: DevStack, new_device_shows: bool, shown: HpkeProfile, scanning: HpkeProfile
) -> None:
    await assert_mixed_profiles_fail_fast(
        front_stack, new_device_shows=new_device_shows, shown=shown, scanning=scanning
    )


async def test_new_device_homeserver_url_is_the_front(front_stack: DevStack, logins: Any) -> None:
    login = await approved_login(front_stack, logins, True)

    assert login.new.homeserver_url == front_stack.homeserver_url


def test_synapse_itself_does_not_serve_gen2(front_stack: DevStack) -> None:
    response = httpx.get(under(front_stack.synapse_url, GEN2_UNSTABLE_PATH), trust_env=False)

    assert response.status_code == 404


def test_well_known_names_the_front_as_homeserver(front_stack: DevStack) -> None:
    response = httpx.get(f"{front_stack.homeserver_url}.well-known/matrix/client", trust_env=False)

    assert response.json()["m.homeserver"]["base_url"] == front_stack.homeserver_url


def test_gen1_session_urls_name_the_front(front_stack: DevStack) -> None:
    assert front_stack.rendezvous_url is not None

    response = httpx.post(
        under(front_stack.rendezvous_url, GEN1_PATH),
        content=b"",
        headers={"Content-Type": "text/plain"},
        trust_env=False,
    )

    assert response.json()["url"].startswith(under(front_stack.homeserver_url, GEN1_PATH) + "/")


def test_gen1_write_with_if_match_succeeds_through_the_front(front_stack: DevStack) -> None:
    with httpx.Client(trust_env=False) as http:
        created = http.post(
            under(front_stack.homeserver_url, GEN1_PATH), content=b"", headers={"Content-Type": "text/plain"}
        )
        written = http.put(
            created.json()["url"],
            content=b"payload",
            headers={"Content-Type": "text/plain", "If-Match": created.headers["ETag"]},
        )

    assert written.status_code == 202
