"""A device signed in through the stack can set up end-to-end encryption on the real Synapse.

Keys are real Ed25519 keys (``cryptography``) and signatures are checked by Synapse itself. In MAS mode
Synapse 1.163 has no user-interactive auth: the first cross-signing upload needs none (MSC3967), and
replacing keys needs the OAuth server to call ``/_synapse/mas/allow_cross_signing_reset`` after the user
approves on the account page (``?action=org.matrix.cross_signing_reset``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack import DeviceTokens, DevStack
from devstack.browser import Browser
from tests.devstack.flow import bearer

pytestmark = pytest.mark.synapse


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _public(key: Ed25519PrivateKey) -> str:
    return _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _signed(obj: dict[str, Any], user_id: str, key_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """*obj* with a Matrix signature (canonical JSON without ``signatures``/``unsigned``) added."""
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    canonical = json.dumps(unsigned, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    signatures = obj.get("signatures", {})
    signatures.setdefault(user_id, {})[f"ed25519:{key_id}"] = _b64(key.sign(canonical))
    return {**obj, "signatures": signatures}


def _cross_signing_upload(user_id: str) -> dict[str, Any]:
    master, self_signing, user_signing = (Ed25519PrivateKey.generate() for _ in range(3))

    def key(usage: str, private: Ed25519PrivateKey) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "usage": [usage],
            "keys": {f"ed25519:{_public(private)}": _public(private)},
        }

    return {
        "master_key": key("master", master),
        "self_signing_key": _signed(key("self_signing", self_signing), user_id, _public(master), master),
        "user_signing_key": _signed(key("user_signing", user_signing), user_id, _public(master), master),
    }


@pytest.fixture
def device(stack: DevStack, user: tuple[str, str], device_id: str) -> DeviceTokens:
    return stack.login_device(user[0], device_id)


def test_synapse_accepts_device_keys_from_a_stack_device(
    stack: DevStack, http: httpx.Client, device: DeviceTokens
) -> None:
    signing = Ed25519PrivateKey.generate()
    device_keys = _signed(
        {
            "user_id": device.user_id,
            "device_id": device.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                f"curve25519:{device.device_id}": _b64(b"\x01" * 32),
                f"ed25519:{device.device_id}": _public(signing),
            },
        },
        device.user_id,
        device.device_id,
        signing,
    )

    upload = http.post(
        f"{stack.homeserver_url}_matrix/client/v3/keys/upload",
        json={"device_keys": device_keys},
        headers=bearer(device.access_token),
    )
    query = http.post(
        f"{stack.homeserver_url}_matrix/client/v3/keys/query",
        json={"device_keys": {device.user_id: []}},
        headers=bearer(device.access_token),
    )

    assert upload.status_code == 200, upload.text
    published = query.json()["device_keys"][device.user_id][device.device_id]
    assert published["keys"] == device_keys["keys"]


def test_first_cross_signing_upload_needs_no_user_interactive_auth(
    stack: DevStack, http: httpx.Client, device: DeviceTokens
) -> None:
    response = http.post(
        f"{stack.homeserver_url}_matrix/client/v3/keys/device_signing/upload",
        json=_cross_signing_upload(device.user_id),
        headers=bearer(device.access_token),
    )

    assert response.status_code == 200, response.text


def test_replacing_cross_signing_keys_points_the_client_to_the_account_page(
    stack: DevStack, http: httpx.Client, device: DeviceTokens
) -> None:
    url = f"{stack.homeserver_url}_matrix/client/v3/keys/device_signing/upload"
    http.post(url, json=_cross_signing_upload(device.user_id), headers=bearer(device.access_token))

    response = http.post(url, json=_cross_signing_upload(device.user_id), headers=bearer(device.access_token))

    assert response.status_code == 401
    params = response.json()["params"]
    assert params["m.oauth"]["url"] == f"{stack.issuer}account?action=org.matrix.cross_signing_reset"


def test_replacing_cross_signing_keys_succeeds_after_approval_on_the_account_page(
    stack: DevStack, http: httpx.Client, user: tuple[str, str], device: DeviceTokens
) -> None:
    url = f"{stack.homeserver_url}_matrix/client/v3/keys/device_signing/upload"
    http.post(url, json=_cross_signing_upload(device.user_id), headers=bearer(device.access_token))
    refused = http.post(url, json=_cross_signing_upload(device.user_id), headers=bearer(device.access_token))
    with Browser() as browser:
        login_page = browser.http.get(refused.json()["params"]["m.oauth"]["url"])
        account_page = browser.http.post(
            f"{stack.issuer}account/login",
            data={
                "csrf": browser.csrf(login_page),
                "action": "org.matrix.cross_signing_reset",
                "username": user[0],
                "password": user[1],
            },
        )
        browser.http.post(f"{stack.issuer}account/cross_signing_reset", data={"csrf": browser.csrf(account_page)})

    retried = http.post(url, json=_cross_signing_upload(device.user_id), headers=bearer(device.access_token))

    assert retried.status_code == 200, retried.text
