"""The new device's side of ``m.login.*`` (docs/protocol.md, "Order"), as a sans-I/O state machine.

It asks for a device authorization grant on the homeserver the existing device names (or the QR names), sends
``m.login.protocol``, shows the user code once the existing device accepted, reports the grant's outcome and
takes the secrets.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from ..channel import Role
from ._machine import FlowState, FlowTimeouts, Input, LoginMachine, Transition
from .actions import (
    Action,
    Done,
    NewDeviceResult,
    PollToken,
    SendMessage,
    StartDeviceAuthorization,
    SyncingSecrets,
    WaitingForToken,
)
from .errors import AuthorizationExpired, FlowTimeout, LoginDeclined, LoginFailed, UnsupportedProtocol
from .homeserver import Homeserver
from .messages import (
    DEVICE_AUTHORIZATION_GRANT,
    DeclinedMessage,
    DeviceAuthorizationGrantInfo,
    FailureReason,
    Message,
    MessageType,
    ProtocolMessage,
    ProtocolsMessage,
    SecretsMessage,
    SuccessMessage,
)

__all__ = ["DeviceAuthorizationGrant", "NewDeviceLogin"]

S, On, M = FlowState, Input, MessageType
G_SHOWS, G_SCANS = Role.GENERATOR, Role.SCANNER


class DeviceAuthorizationGrant(Protocol):
    """What the machine needs from an RFC 8628 device authorization response (the OAuth client's
    ``DeviceAuthorization`` fits)."""

    @property
    def user_code(self) -> str: ...

    @property
    def verification_uri(self) -> str: ...

    @property
    def verification_uri_complete(self) -> str | None: ...

    @property
    def expires_in(self) -> float: ...


class NewDeviceLogin(LoginMachine):
    """The device being signed in. Build it with :meth:`showing_qr` or :meth:`scanning_qr`.

    Inputs (each returns the actions to carry out, in order): :meth:`start`, :meth:`channel_established`,
    :meth:`check_code_entered` (only when showing the QR), :meth:`message_received`,
    :meth:`device_authorization_ready`, :meth:`token_granted`, :meth:`access_denied`, :meth:`grant_expired`,
    :meth:`cancel`, :meth:`abort`, :meth:`timeout`.
    """

    # fmt: off
    TRANSITIONS: ClassVar[tuple[Transition, ...]] = (
        #          QR       state                         on                             to
        Transition(None,    S.IDLE,                       On.START,                      S.ESTABLISHING),
        # (a) new device shows the QR: wait for the user's code, then for m.login.protocols (§4.3)
        Transition(G_SHOWS, S.ESTABLISHING,               On.CHANNEL_ESTABLISHED,        S.AWAITING_CHECK_CODE),
        Transition(G_SHOWS, S.AWAITING_CHECK_CODE,        On.CHECK_CODE_ENTERED,         S.AWAITING_PROTOCOLS),
        Transition(G_SHOWS, S.AWAITING_PROTOCOLS,         M.PROTOCOLS,                   S.AUTHORIZING_DEVICE),
        # (b) new device scans the QR: the QR named the homeserver; authorize at once (§4.4)
        Transition(G_SCANS, S.ESTABLISHING,               On.CHANNEL_ESTABLISHED,        S.AUTHORIZING_DEVICE),
        # both
        Transition(None,    S.AUTHORIZING_DEVICE,         On.DEVICE_AUTHORIZATION_READY, S.AWAITING_PROTOCOL_ACCEPTED),
        Transition(None,    S.AWAITING_PROTOCOL_ACCEPTED, M.PROTOCOL_ACCEPTED,           S.POLLING_TOKEN),
        Transition(None,    S.POLLING_TOKEN,              On.TOKEN_GRANTED,              S.AWAITING_SECRETS),
        Transition(None,    S.POLLING_TOKEN,              On.ACCESS_DENIED,              S.FAILED),
        Transition(None,    S.POLLING_TOKEN,              On.GRANT_EXPIRED,              S.FAILED),
        Transition(None,    S.AWAITING_SECRETS,           M.SECRETS,                     S.DONE),
    )
    # fmt: on

    _WAITING_FOR: ClassVar[dict[FlowState, str]] = {
        **LoginMachine._WAITING_FOR,
        S.AWAITING_PROTOCOLS: "the other device to offer a sign-in protocol (m.login.protocols)",
        S.AUTHORIZING_DEVICE: "the homeserver's OAuth server to start the device authorization",
        S.AWAITING_PROTOCOL_ACCEPTED: "the other device to open the verification page (m.login.protocol_accepted)",
        S.POLLING_TOKEN: "the other device to approve this one on the verification page",
        S.AWAITING_SECRETS: "the other device to send the encryption secrets (m.login.secrets)",
    }

    def __init__(
        self,
        device_id: str,
        *,
        qr_role: Role,
        homeserver: Homeserver | None = None,
        timeouts: FlowTimeouts | None = None,
    ) -> None:
        if not device_id:
            raise ValueError("device_id must not be empty")
        if qr_role is Role.SCANNER and homeserver is None:
            raise ValueError("a new device that scans the QR takes its homeserver from the QR")
        super().__init__(qr_role, timeouts or FlowTimeouts())
        self._device_id = device_id
        self._homeserver = homeserver
        self._grant: DeviceAuthorizationGrant | None = None
        self._grant_expires_at: float | None = None

    @classmethod
    def showing_qr(cls, device_id: str, *, timeouts: FlowTimeouts | None = None) -> NewDeviceLogin:
        """Case (a): this device shows the QR; the existing device scans it and names the homeserver."""
        return cls(device_id, qr_role=Role.GENERATOR, timeouts=timeouts)

    @classmethod
    def scanning_qr(
        cls, device_id: str, homeserver: Homeserver, *, timeouts: FlowTimeouts | None = None
    ) -> NewDeviceLogin:
        """Case (b): this device scans the existing device's QR, which names ``homeserver``
        (see :meth:`Homeserver.from_qr`)."""
        return cls(device_id, qr_role=Role.SCANNER, homeserver=homeserver, timeouts=timeouts)

    @property
    def device_id(self) -> str:
        """The device ID requested in the grant's scope and sent in ``m.login.protocol``."""
        return self._device_id

    @property
    def homeserver(self) -> Homeserver | None:
        """Where to sign in, once known (from the QR, or from ``m.login.protocols``)."""
        return self._homeserver

    # --- inputs -------------------------------------------------------------------------------------------

    def device_authorization_ready(self, grant: DeviceAuthorizationGrant, *, now: float) -> list[Action]:
        """The device authorization request succeeded; tell the existing device where to approve."""
        to = self._next(On.DEVICE_AUTHORIZATION_READY)
        self._grant = grant
        self._grant_expires_at = now + grant.expires_in
        message = ProtocolMessage(
            device_id=self._device_id,
            device_authorization_grant=DeviceAuthorizationGrantInfo(
                verification_uri=grant.verification_uri,
                verification_uri_complete=grant.verification_uri_complete,
            ),
        )
        self._enter(to, now)
        return [SendMessage(message)]

    def token_granted(self, *, now: float) -> list[Action]:
        """The token endpoint issued tokens (and the driver checked them with ``whoami``)."""
        to = self._next(On.TOKEN_GRANTED)
        self._enter(to, now)
        # Progress first, as the existing device does before sending the secrets: the app learns that this device
        # is signed in before the peer can hear it, so neither side's UI runs ahead of the other's.
        return [SyncingSecrets(), SendMessage(SuccessMessage())]

    def access_denied(self) -> list[Action]:
        """The token endpoint answered ``access_denied``: the user declined."""
        self._next(On.ACCESS_DENIED)
        return [SendMessage(DeclinedMessage()), *self._finish(LoginDeclined())]

    def grant_expired(self) -> list[Action]:
        """The token endpoint answered ``expired_token`` (or the grant's lifetime ran out)."""
        self._next(On.GRANT_EXPIRED)
        return self._fail(AuthorizationExpired, FailureReason.AUTHORIZATION_EXPIRED)

    # --- hooks --------------------------------------------------------------------------------------------

    def _after_channel(self, now: float) -> list[Action]:
        if self._state is S.AUTHORIZING_DEVICE:
            assert self._homeserver is not None  # guaranteed by __init__ for the scanning role
            return [StartDeviceAuthorization(self._homeserver, self._device_id)]
        return []

    def _on_message(self, message: Message, to: FlowState, now: float) -> list[Action]:
        if isinstance(message, ProtocolsMessage):
            return self._on_protocols(message, to, now)
        if message.type is M.PROTOCOL_ACCEPTED:
            return self._on_protocol_accepted(to, now)
        if isinstance(message, SecretsMessage):
            self._enter(to, now)
            return [Done(NewDeviceResult(self._device_id, message.secrets))]
        raise AssertionError(f"no handler for {message.type}")  # pragma: no cover - the table lists all three

    def _on_protocols(self, message: ProtocolsMessage, to: FlowState, now: float) -> list[Action]:
        if DEVICE_AUTHORIZATION_GRANT not in message.protocols:
            return self._fail(UnsupportedProtocol, FailureReason.UNSUPPORTED_PROTOCOL)
        self._homeserver = message.location
        self._enter(to, now)
        return [StartDeviceAuthorization(self._homeserver, self._device_id)]

    def _on_protocol_accepted(self, to: FlowState, now: float) -> list[Action]:
        assert self._grant is not None and self._grant_expires_at is not None
        self._enter(to, now)
        return [
            WaitingForToken(
                user_code=self._grant.user_code,
                verification_uri=self._grant.verification_uri,
                verification_uri_complete=self._grant.verification_uri_complete,
            ),
            PollToken(expires_at=self._grant_expires_at),
        ]

    def _deadline_for(self, state: FlowState, now: float) -> float | None:
        message_deadline = self._message_deadline(now)
        if state is S.POLLING_TOKEN:
            return self._grant_expires_at
        if state is S.AWAITING_PROTOCOL_ACCEPTED and self._grant_expires_at is not None:
            if message_deadline is None:
                return self._grant_expires_at
            return min(message_deadline, self._grant_expires_at)
        return message_deadline

    def _timeout_failure(self, now: float) -> tuple[type[LoginFailed], FailureReason | None]:
        grant_wait = self._state in (S.AWAITING_PROTOCOL_ACCEPTED, S.POLLING_TOKEN)
        if grant_wait and self._grant_expires_at is not None and now >= self._grant_expires_at:
            return AuthorizationExpired, FailureReason.AUTHORIZATION_EXPIRED
        return FlowTimeout, FailureReason.USER_CANCELLED
