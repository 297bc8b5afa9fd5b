"""The DEV ONLY admin API and Python API: users and "existing device" tokens without a browser."""

from __future__ import annotations

import uuid

import httpx
import pytest

from devstack import DevStack
from devstack.oauth import InvalidUser
from rendezvous.protocol import WHOAMI_PATH
from tests.devstack.flow import bearer
from tests.support.urls import under

pytestmark = pytest.mark.synapse


def test_admin_api_refuses_requests_without_the_admin_token(stack: DevStack, http: httpx.Client) -> None:
    response = http.post(
        f"{stack.issuer}_devstack/admin/users",
        json={"localpart": "mallory", "password": "x"},
        headers=bearer("wrong"),
    )

    assert response.status_code == 401


def test_admin_api_creates_a_user_and_signs_in_a_device(stack: DevStack, http: httpx.Client) -> None:
    localpart = f"admin-{uuid.uuid4().hex[:8]}"
    admin = bearer(stack.admin_token)

    created = http.post(
        f"{stack.issuer}_devstack/admin/users", json={"localpart": localpart, "password": "pw"}, headers=admin
    )
    session = http.post(
        f"{stack.issuer}_devstack/admin/sessions",
        json={"localpart": localpart, "device_id": "ADMIN"},
        headers=admin,
    )
    whoami = http.get(
        under(stack.homeserver_url, WHOAMI_PATH),
        headers=bearer(session.json()["access_token"]),
    )

    assert created.json() == {"user_id": f"@{localpart}:localhost"}
    assert whoami.json()["device_id"] == "ADMIN"


def test_admin_api_answers_400_for_an_invalid_localpart(stack: DevStack, http: httpx.Client) -> None:
    response = http.post(
        f"{stack.issuer}_devstack/admin/users",
        json={"localpart": "Not Valid", "password": "pw"},
        headers=bearer(stack.admin_token),
    )

    assert response.status_code == 400


def test_python_api_rejects_an_invalid_localpart(stack: DevStack) -> None:
    with pytest.raises(InvalidUser):
        stack.create_user("UPPER", "pw")


def test_login_device_twice_for_the_same_device_is_refused(stack: DevStack, user: tuple[str, str]) -> None:
    stack.login_device(user[0], "TWICE")

    with pytest.raises(Exception, match="already signed in"):
        stack.login_device(user[0], "TWICE")


def test_device_tokens_repr_hides_the_tokens(stack: DevStack, user: tuple[str, str]) -> None:
    tokens = stack.login_device(user[0], "REPR")

    assert tokens.access_token not in repr(tokens)
    assert tokens.refresh_token not in repr(tokens)


def test_stack_repr_hides_its_secrets(stack: DevStack) -> None:
    assert stack.admin_token not in repr(stack)


async def test_async_api_signs_in_a_device(stack: DevStack) -> None:
    localpart = f"async-{uuid.uuid4().hex[:8]}"
    user_id = await stack.async_create_user(localpart, "pw")

    tokens = await stack.async_login_device(localpart, "ASYNC")

    async with httpx.AsyncClient(trust_env=False) as http:
        whoami = await http.get(under(stack.homeserver_url, WHOAMI_PATH), headers=bearer(tokens.access_token))
    assert whoami.json()["user_id"] == user_id
