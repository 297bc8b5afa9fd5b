"""DEV ONLY: users with end-to-end encryption set up, the way a real client leaves them.

:func:`create_e2ee_user` is the one place that makes such a user: ``qrlink demo`` (through
:func:`devstack.demo.create_demo_user`) and the tests that sign a new device in with the secrets of an existing
one both use it. It needs the ``devstack`` and ``e2ee`` (vodozemac) extras.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from devstack.stack import DevStack

if TYPE_CHECKING:
    from qrlink_client.e2ee import BootstrapResult

__all__ = ["E2eeUser", "create_e2ee_user"]


@dataclass(frozen=True)
class E2eeUser:
    """A dev user and its signed-in first device. ``repr`` shows neither password, token nor key."""

    localpart: str
    user_id: str
    device_id: str
    password: str = field(repr=False)
    access_token: str = field(repr=False)
    recovery_key: str = field(repr=False)
    """Unlocks the user's secret storage, which holds the cross-signing keys and the backup key."""
    bootstrap: BootstrapResult = field(repr=False)
    """What the first device set up: its :attr:`~BootstrapResult.bundle` is the secrets a new device receives."""


async def create_e2ee_user(
    stack: DevStack, *, localpart: str | None = None, prefix: str = "user", device_id: str = "PHONE"
) -> E2eeUser:
    """DEV ONLY: create ``localpart`` (default ``<prefix>-<8 random hex digits>``) with a random password, sign
    it in as ``device_id`` and give it cross-signing, a key backup and secret storage from that device."""
    from qrlink_client.e2ee import E2eeHomeserver, OlmDevice, bootstrap_user

    localpart = localpart or f"{prefix}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    await stack.async_create_user(localpart, password)
    tokens = await stack.async_login_device(localpart, device_id)
    # Every part of the stack is on loopback: a configured proxy must not see this traffic.
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        homeserver = E2eeHomeserver(stack.homeserver_url, tokens.access_token, user_id=tokens.user_id, client=http)
        result = await bootstrap_user(homeserver, OlmDevice.generate(tokens.device_id))
    return E2eeUser(
        localpart=localpart,
        user_id=tokens.user_id,
        device_id=tokens.device_id,
        password=password,
        access_token=tokens.access_token,
        recovery_key=result.recovery_key(),
        bootstrap=result,
    )
