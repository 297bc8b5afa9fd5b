"""``bootstrap_user``'s refusals, against a scripted homeserver: a user who already has cross-signing keys, and
a homeserver that asks for user-interactive auth although ``/keys/query`` lists no master key. And
``publish_new_device``: the secrets are checked against the homeserver before the new device uploads anything.

The same refusals against a real Synapse are in ``test_e2ee_synapse.py`` (password UIA) and
``tests/e2e/test_examples.py`` (OAuth-delegated, the ``m.oauth`` stage).

For ``publish_new_device`` the homeserver is a recording stand-in, not Synapse: the behaviour under test is the
order of the calls (no ``/keys/upload`` before the check has passed), which a real homeserver would not show.
These run in milliseconds and so also serve the mutation runs (docs/testing.md, "Mutation testing").
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx
import pytest

from qrlink_client.e2ee import (
    MEGOLM_BACKUP_ALGORITHM,
    AlreadyBootstrapped,
    BackupKey,
    BackupSecret,
    CrossSigningKeys,
    E2eeHomeserver,
    OlmDevice,
    SecretsBundle,
    SecretsMismatch,
    UserInteractiveAuthRequired,
    bootstrap_user,
)
from qrlink_client.e2ee.bootstrap import publish_new_device

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


# --- publish_new_device ---------------------------------------------------------------------------------


class RecordingHomeserver:
    """Answers the reads from fixed published state and records every call, in order."""

    def __init__(self, published: SecretsBundle) -> None:
        self.calls: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        body = published.cross_signing.device_signing_upload_body(USER)
        self._keys_query = {
            "device_keys": {USER: {}},
            "master_keys": {USER: body["master_key"]},
            "self_signing_keys": {USER: body["self_signing_key"]},
            "user_signing_keys": {USER: body["user_signing_key"]},
        }
        backup = published.backup
        self._backup_version = (
            None
            if backup is None
            else {
                "algorithm": MEGOLM_BACKUP_ALGORITHM,
                "auth_data": {"public_key": backup.key.public_key_base64},
                "version": backup.backup_version,
                "count": 0,
                "etag": "0",
            }
        )

    async def user_id(self) -> str:
        self.calls.append("user_id")
        return USER

    async def query_keys(self, user_ids: list[str]) -> dict[str, Any]:
        self.calls.append("query_keys")
        assert list(user_ids) == [USER]
        return self._keys_query

    async def get_backup_version(self) -> dict[str, Any] | None:
        self.calls.append("get_backup_version")
        return self._backup_version

    async def upload_keys(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("upload_keys")
        self.uploads.append(body)
        return {"one_time_key_counts": {"signed_curve25519": len(body.get("one_time_keys", {}))}}

    def __getattr__(self, name: str) -> Any:
        # Any other homeserver call (signatures, account data, ...) is a write the new device must not make.
        async def unexpected(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"publish_new_device called {name}")

        return unexpected


def _bundle(backup_version: str = "3") -> SecretsBundle:
    return SecretsBundle(
        cross_signing=CrossSigningKeys.generate(),
        backup=BackupSecret(key=BackupKey.generate(), backup_version=backup_version),
    )


async def _publish(homeserver: RecordingHomeserver, bundle: SecretsBundle, **kwargs: Any) -> dict[str, Any]:
    return await publish_new_device(cast(E2eeHomeserver, homeserver), OlmDevice.generate("NEWDEVICE"), bundle, **kwargs)


async def test_matching_bundle_is_checked_then_uploaded_once() -> None:
    bundle = _bundle()
    homeserver = RecordingHomeserver(bundle)
    response = await _publish(homeserver, bundle, one_time_keys=5)
    assert homeserver.calls == ["user_id", "query_keys", "get_backup_version", "upload_keys"]
    assert response == {"one_time_key_counts": {"signed_curve25519": 5}}
    (upload,) = homeserver.uploads
    ssk = bundle.cross_signing.self_signing_key.public_key_base64
    assert f"ed25519:{ssk}" in upload["device_keys"]["signatures"][USER]


async def test_forged_cross_signing_keys_raise_secrets_mismatch_and_upload_nothing() -> None:
    published = _bundle()
    forged = SecretsBundle(cross_signing=CrossSigningKeys.generate(), backup=published.backup)
    homeserver = RecordingHomeserver(published)
    with pytest.raises(SecretsMismatch) as raised:
        await _publish(homeserver, forged)
    assert raised.value.key_name == "master_key"
    assert "upload_keys" not in homeserver.calls
    assert homeserver.uploads == []


async def test_forged_backup_key_raises_secrets_mismatch_and_uploads_nothing() -> None:
    published = _bundle()
    forged = SecretsBundle(
        cross_signing=published.cross_signing,
        backup=BackupSecret(key=BackupKey.generate(), backup_version="3"),
    )
    homeserver = RecordingHomeserver(published)
    with pytest.raises(SecretsMismatch) as raised:
        await _publish(homeserver, forged)
    assert raised.value.key_name == "backup_key"
    assert homeserver.uploads == []


async def test_stale_backup_version_raises_secrets_mismatch_and_uploads_nothing() -> None:
    published = _bundle(backup_version="4")
    stale = SecretsBundle(
        cross_signing=published.cross_signing,
        backup=BackupSecret(key=published.backup.key, backup_version="3") if published.backup else None,
    )
    homeserver = RecordingHomeserver(published)
    with pytest.raises(SecretsMismatch) as raised:
        await _publish(homeserver, stale)
    assert raised.value.key_name == "backup_version"
    assert homeserver.uploads == []


async def test_without_check_backup_a_forged_backup_is_not_looked_up() -> None:
    published = _bundle()
    forged = SecretsBundle(
        cross_signing=published.cross_signing,
        backup=BackupSecret(key=BackupKey.generate(), backup_version="3"),
    )
    homeserver = RecordingHomeserver(published)
    await _publish(homeserver, forged, check_backup=False)
    assert homeserver.calls == ["user_id", "query_keys", "upload_keys"]


async def test_forged_cross_signing_keys_are_refused_even_without_check_backup() -> None:
    published = _bundle()
    forged = SecretsBundle(cross_signing=CrossSigningKeys.generate())
    homeserver = RecordingHomeserver(published)
    with pytest.raises(SecretsMismatch):
        await _publish(homeserver, forged, check_backup=False)
    assert homeserver.uploads == []
