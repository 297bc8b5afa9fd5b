"""Thin async client for the Client-Server API endpoints the E2EE steps use.

Each method is one request; nothing here decides anything. Bodies are built by the pure modules
(:mod:`.device`, :mod:`.cross_signing`, :mod:`.backup`, :mod:`.secret_storage`) and errors come back as
:class:`~.errors.HomeserverError` (or :class:`~.errors.UserInteractiveAuthRequired` for a UIA 401), and a
request that gets no answer as :class:`~.errors.HomeserverUnreachable`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .._json import loads
from .errors import HomeserverError, HomeserverUnreachable, SignatureUploadFailed, UserInteractiveAuthRequired

__all__ = ["E2eeHomeserver"]

_V3 = "/_matrix/client/v3"


class E2eeHomeserver:
    """One user's authenticated view of a homeserver. ``repr`` never shows the access token.

    Pass ``client`` to share a connection pool (it is then not closed by :meth:`aclose`); ``user_id`` is
    looked up with ``/account/whoami`` on first need when not given.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        user_id: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token
        self._user_id = user_id
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> E2eeHomeserver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            await self._client.aclose()

    # --- identity
    # -------------------------------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        """``GET /account/whoami``: ``user_id`` and (usually) ``device_id``."""
        return await self._request("GET", f"{_V3}/account/whoami")

    async def user_id(self) -> str:
        """The token's user id (cached after the first ``whoami``)."""
        if self._user_id is None:
            user_id = (await self.whoami()).get("user_id")
            if not isinstance(user_id, str):
                raise HomeserverError("GET", f"{_V3}/account/whoami", 200, {"error": "no user_id in response"})
            self._user_id = user_id
        return self._user_id

    # --- device keys
    # ----------------------------------------------------------------------------------------------

    async def upload_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /keys/upload`` (device keys and/or one-time keys); returns ``one_time_key_counts``."""
        return await self._request("POST", f"{_V3}/keys/upload", body)

    async def query_keys(self, user_ids: Iterable[str]) -> dict[str, Any]:
        """``POST /keys/query`` for all devices of ``user_ids`` (also returns their cross-signing keys)."""
        return await self._request("POST", f"{_V3}/keys/query", {"device_keys": {u: [] for u in user_ids}})

    async def upload_device_signing_keys(
        self, body: Mapping[str, Any], *, auth: Mapping[str, Any] | None = None
    ) -> None:
        """``POST /keys/device_signing/upload``; ``auth`` is the user-interactive auth dict if the server
        wants one.

        Raises :class:`~.errors.UserInteractiveAuthRequired` when the server answers with UIA flows.
        """
        payload = dict(body)
        if auth is not None:
            payload["auth"] = dict(auth)
        await self._request("POST", f"{_V3}/keys/device_signing/upload", payload)

    async def upload_signatures(self, signed_objects: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /keys/signatures/upload`` (user id → device id or master public key → signed object).

        Raises :class:`~.errors.SignatureUploadFailed` if the server lists ``failures``.
        """
        response = await self._request("POST", f"{_V3}/keys/signatures/upload", signed_objects)
        failures = response.get("failures")
        if failures:
            raise SignatureUploadFailed(dict(failures))
        return response

    # --- key backup
    # -----------------------------------------------------------------------------------------------

    async def get_backup_version(self) -> dict[str, Any] | None:
        """``GET /room_keys/version`` (the current backup), or ``None`` if the user has none."""
        try:
            return await self._request("GET", f"{_V3}/room_keys/version")
        except HomeserverError as error:
            if error.status == 404 and error.errcode == "M_NOT_FOUND":
                return None
            raise

    async def create_backup_version(self, algorithm: str, auth_data: Mapping[str, Any]) -> str:
        """``POST /room_keys/version``; returns the new version string."""
        path = f"{_V3}/room_keys/version"
        response = await self._request("POST", path, {"algorithm": algorithm, "auth_data": dict(auth_data)})
        version = response.get("version")
        if not isinstance(version, str):
            raise HomeserverError("POST", path, 200, {"error": "no version in response"})
        return version

    async def put_room_key(
        self, version: str, room_id: str, session_id: str, key_backup_data: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``PUT /room_keys/keys/{roomId}/{sessionId}?version=``: store one encrypted room key
        (:func:`~.room_keys.key_backup_data`); returns the backup's ``etag`` and ``count``."""
        path = f"{_V3}/room_keys/keys/{quote(room_id, safe='')}/{quote(session_id, safe='')}"
        return await self._request("PUT", path, key_backup_data, params={"version": version})

    async def get_room_keys(self, version: str) -> dict[str, Any]:
        """``GET /room_keys/keys?version=``: every stored room key, ``{"rooms": {room: {"sessions": …}}}``."""
        return await self._request("GET", f"{_V3}/room_keys/keys", params={"version": version})

    # --- rooms
    # ---------------------------------------------------------------------------------------------------

    async def create_room(self, body: Mapping[str, Any]) -> str:
        """``POST /createRoom``; returns the new room's ID."""
        path = f"{_V3}/createRoom"
        response = await self._request("POST", path, body)
        room_id = response.get("room_id")
        if not isinstance(room_id, str):
            raise HomeserverError("POST", path, 200, {"error": "no room_id in response"})
        return room_id

    async def joined_rooms(self) -> list[str]:
        """``GET /joined_rooms``: the IDs of the rooms the user is in."""
        rooms = (await self._request("GET", f"{_V3}/joined_rooms")).get("joined_rooms")
        return [room for room in rooms if isinstance(room, str)] if isinstance(rooms, list) else []

    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any], txn_id: str) -> str:
        """``PUT /rooms/{roomId}/send/{eventType}/{txnId}``; returns the event ID."""
        path = f"{_V3}/rooms/{quote(room_id, safe='')}/send/{quote(event_type, safe='')}/{quote(txn_id, safe='')}"
        event_id = (await self._request("PUT", path, content)).get("event_id")
        if not isinstance(event_id, str):
            raise HomeserverError("PUT", path, 200, {"error": "no event_id in response"})
        return event_id

    async def room_messages(
        self, room_id: str, *, limit: int = 20, types: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """``GET /rooms/{roomId}/messages?dir=b``: the room's latest events, newest first (``chunk``), only
        ``types`` when given."""
        params: dict[str, str] = {"dir": "b", "limit": str(limit)}
        if types is not None:
            params["filter"] = json.dumps({"types": types}, separators=(",", ":"))
        response = await self._request("GET", f"{_V3}/rooms/{quote(room_id, safe='')}/messages", params=params)
        chunk = response.get("chunk")
        return [event for event in chunk if isinstance(event, dict)] if isinstance(chunk, list) else []

    # --- account data
    # ---------------------------------------------------------------------------------------------

    async def get_account_data(self, event_type: str) -> dict[str, Any] | None:
        """The user's global account data of ``event_type``, or ``None`` if unset (404 ``M_NOT_FOUND``)."""
        try:
            return await self._request("GET", await self._account_data_path(event_type))
        except HomeserverError as error:
            if error.status == 404 and error.errcode == "M_NOT_FOUND":
                return None
            raise

    async def put_account_data(self, event_type: str, content: Mapping[str, Any]) -> None:
        """Set the user's global account data of ``event_type``."""
        await self._request("PUT", await self._account_data_path(event_type), content)

    async def _account_data_path(self, event_type: str) -> str:
        user = quote(await self.user_id(), safe="")
        return f"{_V3}/user/{user}/account_data/{quote(event_type, safe='')}"

    # --- plumbing
    # -------------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(
                method,
                self.base_url + path,
                json=dict(body) if body is not None else None,
                params=dict(params) if params is not None else None,
                headers={"Authorization": f"Bearer {self._access_token}"},
            )
        except httpx.HTTPError as error:
            # The request (and so the exception's own text) holds the access token and maybe secrets: keep the kind.
            raise HomeserverUnreachable(method, path, type(error).__name__) from None
        try:
            parsed = loads(response.content)
        except ValueError:  # not JSON, or not I-JSON (too deep, a lone surrogate, NaN)
            parsed = None
        data: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
        if response.is_success:
            if data is None:
                raise HomeserverError(method, path, response.status_code, {"error": "response is not a JSON object"})
            return data
        if response.status_code == 401 and data is not None and "flows" in data:
            raise UserInteractiveAuthRequired(method, path, response.status_code, data)
        raise HomeserverError(method, path, response.status_code, data)

    def __repr__(self) -> str:
        return f"E2eeHomeserver(base_url={self.base_url!r}, user_id={self._user_id!r})"
