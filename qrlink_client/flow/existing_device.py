"""The existing (signed-in) device's side of ``m.login.*`` (docs/protocol.md, "Order"), as a sans-I/O state
machine.

It offers the device authorization grant, checks that the new device's ID is unused, opens the verification
URI for its user, waits for ``m.login.success`` and for the new device to appear on the homeserver, and only then
sends the secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from ..channel import Role
from ._machine import FlowState, FlowTimeouts, Input, LoginMachine, Transition
from .actions import (
    Action,
    CheckDeviceUnused,
    Done,
    ExistingDeviceResult,
    OpenVerificationUri,
    SendMessage,
    SyncingSecrets,
    WaitForDevice,
    WaitingForAuth,
)
from .errors import (
    DeviceAlreadyExists,
    DeviceNotFound,
    LoginDeclined,
    LoginFailed,
    UnsupportedProtocol,
    VerificationUriUnavailable,
)
from .messages import (
    DEVICE_AUTHORIZATION_GRANT,
    DeviceAuthorizationGrantInfo,
    FailureReason,
    HomeserverField,
    Message,
    MessageType,
    ProtocolAcceptedMessage,
    ProtocolMessage,
    ProtocolsMessage,
    SecretsMessage,
)

if TYPE_CHECKING:
    from ..e2ee.secrets_bundle import SecretsBundle

__all__ = ["ExistingDeviceLogin"]

S, On, M = FlowState, Input, MessageType
E_SHOWS, E_SCANS = Role.GENERATOR, Role.SCANNER


class ExistingDeviceLogin(LoginMachine):
    """The signed-in device that grants the login. Build it with :meth:`showing_qr` or :meth:`scanning_qr`.

    Inputs (each returns the actions to carry out, in order): :meth:`start`, :meth:`channel_established`,
    :meth:`check_code_entered` (only when showing the QR), :meth:`message_received`, :meth:`device_checked`
    (or :meth:`device_absent` / :meth:`device_exists` directly), :meth:`verification_uri_opened`,
    :meth:`verification_uri_unavailable`, :meth:`device_appeared`, :meth:`cancel`, :meth:`abort`, :meth:`timeout`.

    ``base_url`` is this device's homeserver (client-server API base URL). ``generation`` picks the
    ``m.login.protocols`` shape: Gen-1 peers read ``homeserver`` (rust-sdk parses it as a URL, so the base URL is
    sent there too), Gen-2 peers read ``base_url``.
    """

    # fmt: off
    TRANSITIONS: ClassVar[tuple[Transition, ...]] = (
        #          QR       state                       on                               to
        Transition(None,    S.IDLE,                     On.START,                        S.ESTABLISHING),
        # (a) existing device scans: m.login.protocols goes out at once, no code to type here (§4.2)
        Transition(E_SCANS, S.ESTABLISHING,             On.CHANNEL_ESTABLISHED,          S.AWAITING_PROTOCOL),
        # (b) existing device shows the QR: nothing is read until the user typed the new device's code
        Transition(E_SHOWS, S.ESTABLISHING,             On.CHANNEL_ESTABLISHED,          S.AWAITING_CHECK_CODE),
        Transition(E_SHOWS, S.AWAITING_CHECK_CODE,      On.CHECK_CODE_ENTERED,           S.AWAITING_PROTOCOL),
        # both
        Transition(None,    S.AWAITING_PROTOCOL,        M.PROTOCOL,                      S.CHECKING_DEVICE),
        Transition(None,    S.CHECKING_DEVICE,          On.DEVICE_ABSENT,                S.OPENING_VERIFICATION_URI),
        Transition(None,    S.CHECKING_DEVICE,          On.DEVICE_EXISTS,                S.FAILED),
        Transition(None,    S.OPENING_VERIFICATION_URI, On.VERIFICATION_URI_OPENED,      S.AWAITING_OUTCOME),
        Transition(None,    S.OPENING_VERIFICATION_URI, On.VERIFICATION_URI_UNAVAILABLE, S.FAILED),
        Transition(None,    S.AWAITING_OUTCOME,         M.SUCCESS,                       S.WAITING_FOR_DEVICE),
        Transition(None,    S.WAITING_FOR_DEVICE,       On.DEVICE_APPEARED,              S.DONE),
    )
    # fmt: on

    _WAITING_FOR: ClassVar[dict[FlowState, str]] = {
        **LoginMachine._WAITING_FOR,
        S.AWAITING_PROTOCOL: "the new device to ask for a sign-in (m.login.protocol)",
        S.CHECKING_DEVICE: "the homeserver to say whether the new device's ID is free",
        S.OPENING_VERIFICATION_URI: "the verification page to be opened",
        S.AWAITING_OUTCOME: "the user to approve the new device on the verification page",
        S.WAITING_FOR_DEVICE: "the new device to appear on the homeserver",
    }

    def __init__(
        self,
        base_url: str,
        secrets: SecretsBundle,
        *,
        qr_role: Role,
        generation: Literal[1, 2],
        timeouts: FlowTimeouts | None = None,
    ) -> None:
        if not base_url.strip():
            raise ValueError("base_url must not be empty")
        if generation not in (1, 2):
            raise ValueError("generation is 1 (MSC4108) or 2 (MSC4388)")
        super().__init__(qr_role, timeouts or FlowTimeouts())
        self._base_url = base_url
        self._secrets = secrets
        self._generation = generation
        self._device_id: str | None = None
        self._grant: DeviceAuthorizationGrantInfo | None = None

    @classmethod
    def showing_qr(
        cls,
        base_url: str,
        secrets: SecretsBundle,
        *,
        generation: Literal[1, 2],
        timeouts: FlowTimeouts | None = None,
    ) -> ExistingDeviceLogin:
        """Case (b): this device shows the QR; the new device scans it."""
        return cls(base_url, secrets, qr_role=Role.GENERATOR, generation=generation, timeouts=timeouts)

    @classmethod
    def scanning_qr(
        cls,
        base_url: str,
        secrets: SecretsBundle,
        *,
        generation: Literal[1, 2],
        timeouts: FlowTimeouts | None = None,
    ) -> ExistingDeviceLogin:
        """Case (a): this device scans the new device's QR."""
        return cls(base_url, secrets, qr_role=Role.SCANNER, generation=generation, timeouts=timeouts)

    @property
    def device_id(self) -> str | None:
        """The new device's ID, once ``m.login.protocol`` named it."""
        return self._device_id

    def __repr__(self) -> str:
        # The secrets bundle stays out of the repr, even though its own repr is safe.
        return (
            f"ExistingDeviceLogin(qr_role={self._qr_role.name}, generation={self._generation}, "
            f"state={self._state.name})"
        )

    # --- inputs -------------------------------------------------------------------------------------------

    def device_checked(self, status: int, *, now: float) -> list[Action]:
        """The HTTP status ``GET /devices/{device_id}`` answered. Only 404 means the ID is free
        (:meth:`device_absent`); anything else (200, but also 401, 403, 500…) may mean a device the login would
        take over, so the login ends with ``device_already_exists`` (:meth:`device_exists`, rust-sdk's rule)."""
        if status == 404:
            return self.device_absent(now=now)
        return self.device_exists()

    def device_absent(self, *, now: float) -> list[Action]:
        """``GET /devices/{device_id}`` answered 404: the ID is free. Open the verification URI next."""
        to = self._next(On.DEVICE_ABSENT)
        assert self._grant is not None
        self._enter(to, now)
        return [
            WaitingForAuth(self._grant.verification_uri),
            OpenVerificationUri(self._grant.uri_to_open, self._grant.verification_uri),
        ]

    def device_exists(self) -> list[Action]:
        """``GET /devices/{device_id}`` answered anything but 404 (rust-sdk's rule, docs/protocol.md, "The existing
        device's checks")."""
        self._next(On.DEVICE_EXISTS)
        return self._fail(DeviceAlreadyExists, FailureReason.DEVICE_ALREADY_EXISTS)

    def verification_uri_opened(self, *, now: float) -> list[Action]:
        """The browser step started; the new device may poll now."""
        to = self._next(On.VERIFICATION_URI_OPENED)
        self._enter(to, now)
        return [SendMessage(ProtocolAcceptedMessage())]

    def verification_uri_unavailable(self) -> list[Action]:
        """The URI could not be opened (no browser, refused scheme…). A user who refuses calls :meth:`cancel`."""
        self._next(On.VERIFICATION_URI_UNAVAILABLE)
        return self._fail(VerificationUriUnavailable, FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI)

    def device_appeared(self, *, now: float) -> list[Action]:
        """``GET /devices/{device_id}`` answered 200: send the secrets and finish."""
        to = self._next(On.DEVICE_APPEARED)
        assert self._device_id is not None
        self._enter(to, now)
        return [
            SyncingSecrets(),
            SendMessage(SecretsMessage(self._secrets)),
            Done(ExistingDeviceResult(self._device_id)),
        ]

    # --- hooks --------------------------------------------------------------------------------------------

    def _after_channel(self, now: float) -> list[Action]:
        if self._state is not S.AWAITING_PROTOCOL:
            return []
        field = HomeserverField.HOMESERVER if self._generation == 1 else HomeserverField.BASE_URL
        protocols = ProtocolsMessage((DEVICE_AUTHORIZATION_GRANT,), self._base_url, field)
        return [SendMessage(protocols)]

    def _on_message(self, message: Message, to: FlowState, now: float) -> list[Action]:
        if isinstance(message, ProtocolMessage):
            return self._on_protocol(message, to, now)
        if message.type is MessageType.SUCCESS:
            assert self._device_id is not None
            self._enter(to, now)
            assert self._deadline is not None
            return [WaitForDevice(self._device_id, self._deadline)]
        raise AssertionError(f"no handler for {message.type}")  # pragma: no cover - the table lists both

    def _on_protocol(self, message: ProtocolMessage, to: FlowState, now: float) -> list[Action]:
        if message.protocol != DEVICE_AUTHORIZATION_GRANT or message.device_authorization_grant is None:
            return self._fail(UnsupportedProtocol, FailureReason.UNSUPPORTED_PROTOCOL)
        self._device_id = message.device_id
        self._grant = message.device_authorization_grant
        self._enter(to, now)
        return [CheckDeviceUnused(message.device_id)]

    def _error_for_peer_reason(self, reason: str) -> type[LoginFailed]:
        # js-sdk answers a denial with m.login.failure user_cancelled instead of m.login.declined
        # (MSC4108SignInWithQR); while the user is at the verification URI, that is what it means.
        if self._state is S.AWAITING_OUTCOME and reason == FailureReason.USER_CANCELLED:
            return LoginDeclined
        return super()._error_for_peer_reason(reason)

    def _deadline_for(self, state: FlowState, now: float) -> float | None:
        if state is S.WAITING_FOR_DEVICE:
            return now + self._timeouts.device_appearance
        return self._message_deadline(now)

    def _timeout_failure(self, now: float) -> tuple[type[LoginFailed], FailureReason | None]:
        if self._state is S.WAITING_FOR_DEVICE:
            return DeviceNotFound, FailureReason.DEVICE_NOT_FOUND
        return super()._timeout_failure(now)
