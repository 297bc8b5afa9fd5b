"""``bootstrap_user``'s refusals, against a scripted homeserver: a user who already has cross-signing keys, and
a homeserver that asks for user-interactive auth although ``/keys/query`` lists no master key.

The same refusals against a real Synapse are in ``test_e2ee_synapse.py`` (password UIA) and
``tests/e2e/test_examples.py`` (OAuth-delegated, the ``m.oauth`` stage).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from qrlink_client.e2ee import (
    AlreadyBootstrapped,
    E2eeHomeserver,
    OlmDevice,
    UserInteractiveAuthRequired,
    bootstrap_user,
)

USER = "@alice:example.org"
RESET_URL = "https://auth.example.org/account?action=org.matrix.cross_signing_reset"


def _homeserver(master_keys: dict[str, Any], requests: list[str]) -> E2eeHomeserver:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        if request.url.path.endswith("/keys/query"):
            return httpx.Response(200, json={"device_keys": {USER: {}}, "master_keys": master_keys})
        if request.url.path.endswith("/keys/device_signing/upload"):
            assert "auth" not in json.loads(request.content)
            body = {
                "session": "s1",
                "flows": [{"stages": ["m.oauth"]}, {"stages": ["org.matrix.cross_signing_reset"]}],
                "params": {"m.oauth": {"url": RESET_URL}, "org.matrix.cross_signing_reset": {"url": RESET_URL}},
            }
            return httpx.Response(401, json=body)
        return httpx.Response(200, json={})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return E2eeHomeserver("https://matrix.example.org", "token", user_id=USER, client=client)


async def test_a_user_with_a_master_key_is_refused_before_any_upload() -> None:
    requests: list[str] = []
    master = {USER: {"user_id": USER, "usage": ["master"], "keys": {"ed25519:abc": "abc"}}}
    with pytest.raises(AlreadyBootstrapped) as caught:
        await bootstrap_user(_homeserver(master, requests), OlmDevice.generate("DEV"))
    assert caught.value.master_key == "abc"
    assert str(caught.value).startswith(f"{USER} already has cross-signing keys (master key abc).")
    assert requests == ["/_matrix/client/v3/keys/query"]


async def test_uia_without_auth_says_auth_is_needed_and_which_flows_are_offered() -> None:
    requests: list[str] = []
    with pytest.raises(UserInteractiveAuthRequired) as caught:
        await bootstrap_user(_homeserver({}, requests), OlmDevice.generate("DEV"))
    error = caught.value
    assert error.session == "s1"
    assert error.flows == [["m.oauth"], ["org.matrix.cross_signing_reset"]]
    assert error.oauth_url == RESET_URL
    message = str(error)
    assert "POST /_matrix/client/v3/keys/device_signing/upload -> HTTP 401" in message
    assert f"the server offers: m.oauth or org.matrix.cross_signing_reset; approve at {RESET_URL}" in message
    assert "bootstrap_user needs auth=" in message
