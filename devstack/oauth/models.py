"""In-memory state of the development OAuth server: clients, users, device grants, sessions, tokens.

Everything lives in one :class:`OAuthStore` owned by the server's event loop; nothing here does I/O. Secrets
(passwords, device codes, tokens) are kept out of every ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc8628 import DeviceCredentialMixin

Clock = Callable[[], float]

# Crockford's base32 alphabet (no I, L, O, U): easy to read aloud and to type from a phone screen.
USER_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
USER_CODE_LENGTH = 8
_USER_CODE_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_user_code() -> str:
    """A fresh 8-character user code from Crockford's base32 alphabet."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(typed: str) -> str:
    """What the user typed, as a user code: case, dashes and spaces ignored, O/I/L read as 0/1/1 (Crockford)."""
    compact = "".join(typed.split()).replace("-", "").upper()
    return compact.translate(_USER_CODE_TYPOS)


@dataclass(eq=False)
class Client(ClientMixin):
    """A client registered through RFC 7591 dynamic registration (or built in)."""

    client_id: str
    grant_types: tuple[str, ...]
    token_endpoint_auth_method: str
    client_name: str | None = None
    client_uri: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    client_secret: str | None = field(default=None, repr=False)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return ""

    def get_allowed_scope(self, scope: Collection[str] | str) -> str:
        # Scope rules live in parse_matrix_scope; a refresh keeps the session's scope as granted.
        return scope if isinstance(scope, str) else " ".join(scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # RFC 7591 registers one method for the token endpoint; the device authorization and revocation
        # endpoints use the same one (RFC 8628 §3.1, RFC 7009 §2.1: authenticate as at the token endpoint).
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    @property
    def display_name(self) -> str:
        """A human-readable name for pages: the registered ``client_name``, else the client ID."""
        return self.client_name or self.client_id


@dataclass(eq=False)
class User:
    """A development user: a Matrix localpart with a password known only to this server."""

    localpart: str
    sub: str
    displayname: str | None = None
    _password_salt: bytes = field(default=b"", repr=False)
    _password_hash: bytes = field(default=b"", repr=False)
    provisioned: bool = False

    def set_password(self, password: str) -> None:
        self._password_salt = secrets.token_bytes(16)
        self._password_hash = _hash_password(password, self._password_salt)

    def check_password(self, password: str) -> bool:
        return hmac.compare_digest(self._password_hash, _hash_password(password, self._password_salt))


def _hash_password(password: str, salt: bytes) -> bytes:
    # scrypt with small parameters: a dev server, but plain or fast hashes would set a bad example.
    return hashlib.scrypt(password.encode(), salt=salt, n=2**12, r=8, p=1)


class GrantStatus(Enum):
    """Where a device authorization request stands (RFC 8628 §3.3 user interaction, §3.5 polling)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REDEEMED = "redeemed"
    EXPIRED = "expired"


@dataclass(eq=False)
class DeviceGrant(DeviceCredentialMixin):
    """One device authorization request (RFC 8628 §3.1/3.2) and its polling state."""

    client_id: str
    scope: str
    device_id: str
    user_code: str
    expires_at: float
    interval: int
    clock: Clock = field(repr=False)
    device_code: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(32))
    status: GrantStatus = GrantStatus.PENDING
    localpart: str | None = None
    last_poll: float | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return self.clock() >= self.expires_at


@dataclass(eq=False)
class Session:
    """A logged-in device: what a device grant (or the dev login) created; tokens come and go within it."""

    session_id: str
    localpart: str
    client_id: str
    device_id: str
    scope: str
    created_at: float
    ended: bool = False


@dataclass(eq=False)
class Token(TokenMixin):
    """An access token and (optionally) its refresh token, issued together for one session."""

    session: Session
    issued_at: float
    expires_in: int
    clock: Clock = field(repr=False)
    access_token: str = field(repr=False, default="")
    refresh_token: str | None = field(repr=False, default=None)
    access_revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.session.client_id)

    def get_scope(self) -> str:
        return self.session.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return self.clock() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.access_revoked or self.session.ended

    def refresh_usable(self) -> bool:
        return self.refresh_token is not None and not self.refresh_revoked and not self.session.ended

    def get_user(self) -> str:
        return self.session.localpart

    def get_client(self) -> ClientMixin:
        raise NotImplementedError("look the client up by session.client_id")


@dataclass(frozen=True)
class DeviceToDelete:
    """A device whose session ended and which must be removed from the homeserver."""

    localpart: str
    device_id: str


class OAuthStore:
    """All state of one development OAuth server, in memory, used from one event loop."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self._grants_by_device_code: dict[str, DeviceGrant] = {}
        self._grants_by_user_code: dict[str, DeviceGrant] = {}
        self.sessions: dict[str, Session] = {}
        self._tokens_by_access: dict[str, Token] = {}
        self._tokens_by_refresh: dict[str, Token] = {}
        self._devices_to_delete: list[DeviceToDelete] = []

    def __repr__(self) -> str:
        return f"OAuthStore(clients={len(self.clients)}, users={len(self.users)}, sessions={len(self.sessions)})"

    # -- clients ---------------------------------------------------------------------------------------------

    def add_client(self, client: Client) -> Client:
        self.clients[client.client_id] = client
        return client

    # -- users -----------------------------------------------------------------------------------------------

    def add_user(self, localpart: str, password: str, displayname: str | None = None) -> User:
        """Create *localpart*, or reset its password and display name if it exists."""
        user = self.users.get(localpart)
        if user is None:
            user = User(localpart=localpart, sub=f"usr_{secrets.token_hex(8)}", displayname=displayname)
            self.users[localpart] = user
        elif displayname is not None:
            user.displayname = displayname
        user.set_password(password)
        return user

    def authenticate(self, localpart: str, password: str) -> User | None:
        user = self.users.get(localpart)
        if user is None:
            # Spend the same time on unknown users as on known ones.
            _hash_password(password, b"\0" * 16)
            return None
        return user if user.check_password(password) else None

    # -- device grants ---------------------------------------------------------------------------------------

    def add_device_grant(
        self, *, client_id: str, scope: str, device_id: str, lifetime: int, interval: int
    ) -> DeviceGrant:
        user_code = new_user_code()
        while user_code in self._grants_by_user_code:
            user_code = new_user_code()
        grant = DeviceGrant(
            client_id=client_id,
            scope=scope,
            device_id=device_id,
            user_code=user_code,
            expires_at=self.clock() + lifetime,
            interval=interval,
            clock=self.clock,
        )
        self._grants_by_device_code[grant.device_code] = grant
        self._grants_by_user_code[user_code] = grant
        return grant

    def grant_by_device_code(self, device_code: str) -> DeviceGrant | None:
        return self._grants_by_device_code.get(device_code)

    def grant_by_user_code(self, typed: str) -> DeviceGrant | None:
        return self._grants_by_user_code.get(normalize_user_code(typed))

    def expire_grants(self) -> None:
        """Forget expired grants; the device of an approved grant nobody redeemed is queued for deletion."""
        for grant in [g for g in self._grants_by_device_code.values() if g.is_expired()]:
            if grant.status is GrantStatus.APPROVED and grant.localpart is not None:
                self._queue_device_deletion(grant.localpart, grant.device_id)
            if grant.status in (GrantStatus.PENDING, GrantStatus.APPROVED):
                grant.status = GrantStatus.EXPIRED
            # Keep expired grants a while so polls still get ``expired_token`` rather than ``invalid_grant``.
            if self.clock() >= grant.expires_at + 600:
                del self._grants_by_device_code[grant.device_code]
                self._grants_by_user_code.pop(grant.user_code, None)

    # -- sessions and tokens ---------------------------------------------------------------------------------

    def start_session(self, *, localpart: str, client_id: str, device_id: str, scope: str) -> Session:
        session = Session(
            session_id=f"ses_{secrets.token_hex(8)}",
            localpart=localpart,
            client_id=client_id,
            device_id=device_id,
            scope=scope,
            created_at=self.clock(),
        )
        self.sessions[session.session_id] = session
        return session

    def active_session_for_device(self, localpart: str, device_id: str) -> Session | None:
        for session in self.sessions.values():
            if not session.ended and session.localpart == localpart and session.device_id == device_id:
                return session
        return None

    def add_token(self, session: Session, *, access_token: str, refresh_token: str | None, expires_in: int) -> Token:
        token = Token(
            session=session,
            issued_at=self.clock(),
            expires_in=expires_in,
            clock=self.clock,
            access_token=access_token,
            refresh_token=refresh_token,
        )
        self._tokens_by_access[access_token] = token
        if refresh_token is not None:
            self._tokens_by_refresh[refresh_token] = token
        return token

    def token_by_access(self, access_token: str) -> Token | None:
        return self._tokens_by_access.get(access_token)

    def token_by_refresh(self, refresh_token: str) -> Token | None:
        return self._tokens_by_refresh.get(refresh_token)

    def find_token(self, value: str, hint: str | None) -> Token | None:
        """Look a token up by value, trying the hinted kind first (RFC 7009 §2.1, RFC 7662 §2.1)."""
        if hint == "refresh_token":
            return self.token_by_refresh(value) or self.token_by_access(value)
        return self.token_by_access(value) or self.token_by_refresh(value)

    def end_session(self, session: Session) -> None:
        """End *session*: every token of it stops working and its device is queued for deletion."""
        if session.ended:
            return
        session.ended = True
        self._queue_device_deletion(session.localpart, session.device_id)

    def user_sessions(self, localpart: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.localpart == localpart and not s.ended]

    def take_devices_to_delete(self) -> list[DeviceToDelete]:
        """Devices queued for deletion that no live session or approved grant still uses; clears the queue."""
        queued, self._devices_to_delete = self._devices_to_delete, []
        in_use = {(s.localpart, s.device_id) for s in self.sessions.values() if not s.ended}
        in_use |= {
            (g.localpart, g.device_id)
            for g in self._grants_by_device_code.values()
            if g.status is GrantStatus.APPROVED and g.localpart is not None and not g.is_expired()
        }
        return [d for d in dict.fromkeys(queued) if (d.localpart, d.device_id) not in in_use]

    def _queue_device_deletion(self, localpart: str, device_id: str) -> None:
        self._devices_to_delete.append(DeviceToDelete(localpart, device_id))
