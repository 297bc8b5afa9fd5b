"""A device's and a browser's side of the OAuth flows, done with plain HTTP, for the stack's tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_CSRF = re.compile(r'name=csrf value="([^"]+)"')


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


class Browser:
    """The user's browser on the verification page: real GETs and form POSTs, cookies kept, no JavaScript."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=15.0, trust_env=False, follow_redirects=True)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def csrf(page: httpx.Response) -> str:
        match = _CSRF.search(page.text)
        assert match, f"no CSRF field in page:\n{page.text}"
        return match.group(1)

    def open_link(self, verification_uri_complete: str) -> httpx.Response:
        page = self.http.get(verification_uri_complete)
        assert page.status_code == 200, page.text
        return page

    def sign_in_with_code(
        self, verification_uri_complete: str, user_code: str, username: str, password: str
    ) -> httpx.Response:
        """Open the page, submit code + credentials: the consent page (or an error page)."""
        page = self.open_link(verification_uri_complete)
        return self.http.post(
            page.url,
            data={
                "csrf": self.csrf(page),
                "user_code": user_code,
                "username": username,
                "password": password,
            },
        )

    def answer(self, consent_page: httpx.Response, user_code: str, action: str) -> httpx.Response:
        """Press Approve or Deny on the consent page."""
        assert consent_page.status_code == 200, consent_page.text
        return self.http.post(
            consent_page.url.join("link/consent"),
            data={"csrf": self.csrf(consent_page), "user_code": user_code, "action": action},
        )

    def approve(self, grant: dict[str, Any], username: str, password: str, action: str = "approve") -> httpx.Response:
        consent = self.sign_in_with_code(grant["verification_uri_complete"], grant["user_code"], username, password)
        return self.answer(consent, grant["user_code"], action)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def device_path(device_id: str) -> str:
    """``/devices/{deviceId}`` with the ID percent-encoded, ``/`` and ``+`` included."""
    return f"_matrix/client/v3/devices/{quote(device_id, safe='')}"
