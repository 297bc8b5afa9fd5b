"""DEV ONLY: what ``qrlink demo`` (and tests of the ``qrlink`` CLI) need from a running development stack.

- :func:`create_demo_user`: a fresh user whose first device set up cross-signing, a key backup and secret
  storage, the way a real client does, so that it has secrets to hand to a new device
  (:func:`devstack.users.create_e2ee_user`, which the tests use too).
- :func:`answer_verification_page`: a scripted browser that opens a verification URI, signs in with the user's
  password and presses *Approve* (or *Deny*), with plain HTTP requests against the stack's OAuth server
  (:mod:`devstack.browser`, the browser the tests script too).

Both need the ``devstack`` extra; :func:`create_demo_user` also needs ``e2ee`` (vodozemac).
"""

from __future__ import annotations

from devstack.browser import VerificationPageError, answer_verification_page
from devstack.stack import DevStack
from devstack.users import E2eeUser, create_e2ee_user

__all__ = ["DemoUser", "VerificationPageError", "answer_verification_page", "create_demo_user"]

#: The user :func:`create_demo_user` returns (the same class as the tests' users).
DemoUser = E2eeUser


async def create_demo_user(stack: DevStack, *, localpart: str | None = None, device_id: str = "PHONE") -> DemoUser:
    """DEV ONLY: create ``localpart`` (default ``demo-<8 random hex digits>``) with a random password, sign it in
    as ``device_id`` and give it cross-signing, a key backup and secret storage from that device
    (:func:`devstack.users.create_e2ee_user`)."""
    return await create_e2ee_user(stack, localpart=localpart, prefix="demo", device_id=device_id)
