"""Client for Synapse's ``/_synapse/mas/*`` API, through which a delegated OAuth server manages users and devices.

Synapse 1.163 in MAS mode exposes these endpoints on its client listener and accepts only the shared secret
from ``matrix_authentication_service.secret`` as a Bearer token. Bodies are JSON; see Synapse's
``synapse/rest/synapse/mas/{users,devices}.py`` for the accepted fields.
"""

from __future__ import annotations

from typing import Any

import httpx


class ProvisioningError(RuntimeError):
    """Synapse refused or could not be reached for a ``/_synapse/mas`` call."""


class SynapseAdminClient:
    """Async client for the MAS-facing admin API of one Synapse."""

    def __init__(self, homeserver_url: str, secret: str, *, timeout: float = 10.0) -> None:
        self._base = homeserver_url.rstrip("/") + "/_synapse/mas/"
        self._secret = secret
        self._timeout = timeout

    def __repr__(self) -> str:
        # The shared secret is deliberately absent.
        return f"SynapseAdminClient(base={self._base!r})"

    async def provision_user(self, localpart: str, *, displayname: str | None = None) -> None:
        """Create the user if missing (``provision_user`` also updates an existing one)."""
        body: dict[str, Any] = {"localpart": localpart}
        if displayname is not None:
            body["set_displayname"] = displayname
        await self._post("provision_user", body)

    async def upsert_device(self, localpart: str, device_id: str, *, display_name: str | None = None) -> None:
        """Create the device (or update its display name) for an existing user."""
        body: dict[str, Any] = {"localpart": localpart, "device_id": device_id}
        if display_name is not None:
            body["display_name"] = display_name
        await self._post("upsert_device", body)

    async def delete_device(self, localpart: str, device_id: str) -> None:
        """Delete the device, its keys and its to-device messages."""
        await self._post("delete_device", {"localpart": localpart, "device_id": device_id})

    async def allow_cross_signing_reset(self, localpart: str) -> None:
        """Let the user replace their cross-signing keys without user-interactive auth, for a limited time."""
        await self._post("allow_cross_signing_reset", {"localpart": localpart})

    async def _post(self, endpoint: str, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {self._secret}"}
        try:
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
                response = await client.post(self._base + endpoint, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise ProvisioningError(f"Synapse {endpoint}: {type(error).__name__}: {error}") from None
        if response.status_code >= 300:
            raise ProvisioningError(f"Synapse {endpoint} answered {response.status_code}: {response.text[:300]}")
