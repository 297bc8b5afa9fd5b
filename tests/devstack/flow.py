"""A device's side of the OAuth flows, done with plain HTTP, for the stack's tests (the user's side is
:class:`devstack.browser.Browser`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def stable_scope(device_id: str) -> str:
    return f"urn:matrix:client:api:* urn:matrix:client:device:{device_id}"


def unstable_scope(device_id: str) -> str:
    return f"urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:{device_id}"


@dataclass
class OAuthClient:
    """The new device: metadata from the homeserver, then registration, device authorization, polling."""

    http: httpx.Client
    metadata: dict[str, Any]

    @classmethod
    def discover(cls, http: httpx.Client, homeserver_url: str) -> OAuthClient:
        response = http.get(f"{homeserver_url}_matrix/client/v1/auth_metadata")
        response.raise_for_status()
        return cls(http, response.json())

    def register(self, grant_types: tuple[str, ...] = (DEVICE_GRANT, "refresh_token")) -> str:
        response = self.http.post(
            self.metadata["registration_endpoint"],
            json={
                "client_name": "qrlink test device",
                "client_uri": "https://example.org/",
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "grant_types": list(grant_types),
                "response_types": [],
            },
        )
        assert response.status_code == 201, response.text
        client_id: str = response.json()["client_id"]
        return client_id

    def authorize_device(self, client_id: str, scope: str) -> httpx.Response:
        return self.http.post(
            self.metadata["device_authorization_endpoint"], data={"client_id": client_id, "scope": scope}
        )

    def start(self, device_id: str, *, scope: str | None = None) -> tuple[str, dict[str, Any]]:
        """Register a client and start a device grant for *device_id*: (client_id, authorization response)."""
        client_id = self.register()
        response = self.authorize_device(client_id, scope or stable_scope(device_id))
        assert response.status_code == 200, response.text
        return client_id, response.json()

    def poll(self, client_id: str, device_code: str) -> httpx.Response:
        return self.http.post(
            self.metadata["token_endpoint"],
            data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
        )

    def refresh(self, client_id: str, refresh_token: str) -> httpx.Response:
        return self.http.post(
            self.metadata["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
        )

    def revoke(self, client_id: str, token: str, hint: str = "access_token") -> httpx.Response:
        return self.http.post(
            self.metadata["revocation_endpoint"],
            data={"token": token, "token_type_hint": hint, "client_id": client_id},
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def device_path(device_id: str) -> str:
    """``/devices/{deviceId}`` with the ID percent-encoded, ``/`` and ``+`` included."""
    return f"_matrix/client/v3/devices/{quote(device_id, safe='')}"
