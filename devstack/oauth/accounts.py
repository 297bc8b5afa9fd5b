"""What happens to users, device grants and sessions, including the homeserver side of each change.

This is where the OAuth state meets Synapse: a user is provisioned before their first device, a device is
upserted before its grant is approved (so ``GET /devices/{id}`` turns from 404 to 200 before any token
exists), and the device of an ended session is deleted. HTTP handlers and the stack's Python API both go
through here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from devstack.oauth.models import Client, DeviceGrant, GrantStatus, OAuthStore, Session, User
from devstack.oauth.scopes import device_scope, parse_matrix_scope
from devstack.oauth.server import DevAuthorizationServer
from devstack.oauth.synapse_admin import SynapseAdminClient

logger = logging.getLogger(__name__)

# Matrix user ID grammar for new accounts (spec "User Identifiers"): lower-case, digits and ._=-/+
_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]{1,255}$")
DEV_CLIENT_ID = "devstack-dev-login"


class ApprovalError(RuntimeError):
    """A device grant cannot be approved or denied; the message is shown to the user."""


class InvalidUser(ValueError):
    """The localpart is not a valid Matrix localpart."""


@dataclass(frozen=True)
class DeviceTokens:
    """Tokens for one logged-in device, as the token endpoint would return them."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str

    def __repr__(self) -> str:
        # Tokens are secrets: never in a repr.
        return f"DeviceTokens(user_id={self.user_id!r}, device_id={self.device_id!r}, scope={self.scope!r})"


class Accounts:
    """Users, approvals and sessions of one development OAuth server, kept in step with Synapse."""

    def __init__(self, server: DevAuthorizationServer, synapse: SynapseAdminClient, server_name: str) -> None:
        self.server = server
        self.store: OAuthStore = server.store
        self.synapse = synapse
        self.server_name = server_name
        self.store.add_client(
            Client(
                client_id=DEV_CLIENT_ID,
                grant_types=("refresh_token",),
                token_endpoint_auth_method="none",  # noqa: S106 - an auth method's name, not a password
                client_name="devstack direct login (dev only)",
            )
        )

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def create_user(self, localpart: str, password: str, *, displayname: str | None = None) -> User:
        """Create (or reset) a user here and in Synapse."""
        if not _LOCALPART.match(localpart):
            raise InvalidUser(f"{localpart!r} is not a valid Matrix localpart")
        user = self.store.add_user(localpart, password, displayname)
        # provision_user both creates and updates, so a repeated call refreshes the display name.
        await self.synapse.provision_user(localpart, displayname=user.displayname)
        user.provisioned = True
        return user

    async def approve(self, grant: DeviceGrant, user: User) -> None:
        """Approve *grant* for *user*: the user and device exist in Synapse before the grant can be redeemed."""
        self._check_open(grant)
        if self.store.active_session_for_device(user.localpart, grant.device_id) is not None:
            raise ApprovalError(f"device {grant.device_id} is already signed in for {self.user_id(user.localpart)}")
        await self._ensure_provisioned(user)
        client = self.store.clients.get(grant.client_id)
        await self.synapse.upsert_device(
            user.localpart, grant.device_id, display_name=client.display_name if client else None
        )
        # The grant may have expired while Synapse answered; then nothing must stay behind.
        if grant.is_expired() or grant.status is not GrantStatus.PENDING:
            await self.synapse.delete_device(user.localpart, grant.device_id)
            raise ApprovalError("this request expired or was answered meanwhile")
        grant.localpart = user.localpart
        grant.status = GrantStatus.APPROVED

    def deny(self, grant: DeviceGrant) -> None:
        """Deny *grant*: its client gets ``access_denied``; nothing was created in Synapse."""
        self._check_open(grant)
        grant.status = GrantStatus.DENIED

    async def login_device(self, localpart: str, device_id: str) -> DeviceTokens:
        """DEV ONLY: sign *localpart* in as *device_id* without any browser, as if a grant had been approved."""
        user = self.store.users.get(localpart)
        if user is None:
            raise InvalidUser(f"no user {localpart!r}; create it first")
        scope = parse_matrix_scope(device_scope(device_id))
        if self.store.active_session_for_device(localpart, device_id) is not None:
            raise ApprovalError(f"device {device_id} is already signed in for {self.user_id(localpart)}")
        await self._ensure_provisioned(user)
        await self.synapse.upsert_device(localpart, device_id, display_name="devstack direct login")
        session = self.store.start_session(
            localpart=localpart, client_id=DEV_CLIENT_ID, device_id=device_id, scope=str(scope)
        )
        token = self.server.issue_session_tokens(session, self.store.clients[DEV_CLIENT_ID])
        return DeviceTokens(
            user_id=self.user_id(localpart),
            device_id=device_id,
            access_token=str(token["access_token"]),
            refresh_token=str(token["refresh_token"]),
            expires_in=int(token["expires_in"]),
            scope=str(scope),
        )

    async def end_session(self, session: Session) -> None:
        """End *session* and delete its device from Synapse."""
        self.store.end_session(session)
        await self.sync_deletions()

    async def allow_cross_signing_reset(self, localpart: str) -> None:
        """Let the user replace their cross-signing keys (Synapse skips UIA for a while in MAS mode)."""
        await self.synapse.allow_cross_signing_reset(localpart)

    async def sync_deletions(self) -> None:
        """Expire old grants and delete from Synapse every device whose session ended."""
        self.store.expire_grants()
        for device in self.store.take_devices_to_delete():
            try:
                await self.synapse.delete_device(device.localpart, device.device_id)
            except Exception as error:
                logger.warning("could not delete device %s of %s: %s", device.device_id, device.localpart, error)

    def _check_open(self, grant: DeviceGrant) -> None:
        if grant.is_expired():
            raise ApprovalError("this code has expired; start again on your device")
        if grant.status is not GrantStatus.PENDING:
            raise ApprovalError(f"this request was already {grant.status.value}")

    async def _ensure_provisioned(self, user: User) -> None:
        if not user.provisioned:
            await self.synapse.provision_user(user.localpart, displayname=user.displayname)
            user.provisioned = True
