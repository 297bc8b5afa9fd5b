"""What both login state machines share: states, inputs, the transition-table type, timeouts and the inputs
that work the same on either device (start, channel, check code, messages, cancel, abort, timeout).

Each machine lists its whole happy path in one ``TRANSITIONS`` table (see ``new_device.py`` and
``existing_device.py``). Failure needs no rows: from every state before DONE/FAILED, ``cancel``, ``abort``, a
passed deadline, an ``m.login.failure`` or ``m.login.declined`` from the peer, and any message the table does not
list for the current state all lead to FAILED. A handler may also divert a listed transition to FAILED when the
input's content is unacceptable (e.g. ``m.login.protocols`` without ``device_authorization_grant``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..channel import ChannelError, CheckCode, HpkeProfile, Role
from .actions import Action, EstablishingSecureChannel, Failed, SendMessage, Starting
from .errors import (
    AuthorizationExpired,
    CheckCodeMismatch,
    DeviceAlreadyExists,
    DeviceNotFound,
    FlowTimeout,
    IllegalTransition,
    LoginAborted,
    LoginCancelled,
    LoginDeclined,
    LoginFailed,
    MessageError,
    UnexpectedMessage,
    UnsupportedProtocol,
    VerificationUriUnavailable,
)
from .messages import DeclinedMessage, FailureMessage, FailureReason, Message, MessageType, parse_message

__all__ = ["FlowState", "FlowTimeouts", "Input", "LoginMachine", "Transition"]


class FlowState(enum.Enum):
    """Where a login machine is. Each role uses a subset (see its ``TRANSITIONS``)."""

    IDLE = "idle"
    ESTABLISHING = "establishing"
    """The driver runs the rendezvous + secure-channel handshake."""
    AWAITING_CHECK_CODE = "awaiting_check_code"
    """The device that showed the QR waits for its user to type the code; peer messages are held unread."""
    # new device
    AWAITING_PROTOCOLS = "awaiting_protocols"
    AUTHORIZING_DEVICE = "authorizing_device"
    AWAITING_PROTOCOL_ACCEPTED = "awaiting_protocol_accepted"
    POLLING_TOKEN = "polling_token"  # noqa: S105 - a state name
    AWAITING_SECRETS = "awaiting_secrets"
    # existing device
    AWAITING_PROTOCOL = "awaiting_protocol"
    CHECKING_DEVICE = "checking_device"
    OPENING_VERIFICATION_URI = "opening_verification_uri"
    AWAITING_OUTCOME = "awaiting_outcome"
    WAITING_FOR_DEVICE = "waiting_for_device"
    # the end
    DONE = "done"
    FAILED = "failed"


class Input(enum.Enum):
    """The driver's inputs besides messages (messages are keyed by their :class:`MessageType`)."""

    START = "start"
    CHANNEL_ESTABLISHED = "channel_established"
    CHECK_CODE_ENTERED = "check_code_entered"
    # new device
    DEVICE_AUTHORIZATION_READY = "device_authorization_ready"
    TOKEN_GRANTED = "token_granted"  # noqa: S105 - an input name
    ACCESS_DENIED = "access_denied"
    GRANT_EXPIRED = "grant_expired"
    # existing device
    DEVICE_ABSENT = "device_absent"
    DEVICE_EXISTS = "device_exists"
    VERIFICATION_URI_OPENED = "verification_uri_opened"
    VERIFICATION_URI_UNAVAILABLE = "verification_uri_unavailable"
    DEVICE_APPEARED = "device_appeared"


@dataclass(frozen=True)
class Transition:
    """One row: in ``state``, ``on`` moves to ``to``. ``qr`` restricts the row to the device that shows the QR
    (``Role.GENERATOR``) or scans it (``Role.SCANNER``); ``None`` means either."""

    qr: Role | None
    state: FlowState
    on: Input | MessageType
    to: FlowState


@dataclass(frozen=True)
class FlowTimeouts:
    """How long each wait may last, in seconds.

    ``message`` bounds every wait for something outside this device (the handshake, the peer's next message,
    the user typing the check code or approving in the browser); ``None`` waits for ever. Its default is a
    little over the device-code lifetime of MAS (1200 s), so that the grant's own expiry is what normally ends a
    stalled login. The new device's waits after its device authorization also end when the grant expires.
    ``device_appearance`` is how long the existing device polls for the new device after ``m.login.success``
    (rust-sdk and js-sdk: 10 s).
    """

    message: float | None = 1260.0
    device_appearance: float = 10.0


_ERROR_FOR_REASON: dict[str, type[LoginFailed]] = {
    FailureReason.AUTHORIZATION_EXPIRED: AuthorizationExpired,
    FailureReason.DEVICE_ALREADY_EXISTS: DeviceAlreadyExists,
    FailureReason.DEVICE_NOT_FOUND: DeviceNotFound,
    FailureReason.UNEXPECTED_MESSAGE_RECEIVED: UnexpectedMessage,
    FailureReason.UNSUPPORTED_PROTOCOL: UnsupportedProtocol,
    FailureReason.USER_CANCELLED: LoginCancelled,
    FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI: VerificationUriUnavailable,
}


def describe_cause(cause: BaseException) -> str:
    """A short phrase for why a driver gave up, for :class:`LoginAborted` messages (no payloads or secrets:
    the library's errors never carry them)."""
    # Imported here: the transport package loads httpx, and the machines themselves do no I/O.
    from ..transport.errors import RendezvousUnavailable, SessionExpired, SessionNotFound

    if isinstance(cause, SessionExpired):
        return "the rendezvous session expired"
    if isinstance(cause, SessionNotFound):
        return "the rendezvous session is gone (the other device cancelled it, or the server dropped it)"
    if isinstance(cause, RendezvousUnavailable):
        return f"the rendezvous server stopped answering ({cause})"
    if isinstance(cause, ChannelError):
        return f"the secure channel failed ({type(cause).__name__}: {cause})"
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


_TERMINAL = frozenset({FlowState.DONE, FlowState.FAILED})
_BEFORE_CHANNEL = frozenset({FlowState.IDLE, FlowState.ESTABLISHING})


class LoginMachine:
    """Base of :class:`NewDeviceLogin` and :class:`ExistingDeviceLogin`. Not used directly."""

    TRANSITIONS: ClassVar[Sequence[Transition]]

    def __init__(self, qr_role: Role, timeouts: FlowTimeouts) -> None:
        self._qr_role = qr_role
        self._timeouts = timeouts
        self._state = FlowState.IDLE
        self._deadline: float | None = None
        self._entered_at: float | None = None
        self._check_code: CheckCode | None = None
        self._held: list[bytes] = []
        self._error: LoginFailed | None = None
        self._table = {(row.state, row.on): row.to for row in self.TRANSITIONS if row.qr in (None, qr_role)}

    # --- observation --------------------------------------------------------------------------------------

    @property
    def qr_role(self) -> Role:
        """``Role.GENERATOR`` if this device shows the QR, ``Role.SCANNER`` if it scans it."""
        return self._qr_role

    @property
    def state(self) -> FlowState:
        """The current state."""
        return self._state

    @property
    def deadline(self) -> float | None:
        """When the current wait ends (caller's clock), or ``None``. Call :meth:`timeout` once it has passed."""
        return self._deadline

    @property
    def waiting_for(self) -> str:
        """What the current state waits for, in words: "the other device to scan the QR code", "the user to
        approve the new device on the verification page" … Failure messages name it."""
        if self._state is FlowState.ESTABLISHING:
            if self._qr_role is Role.GENERATOR:
                return "the other device to scan the QR code and set up the secure channel"
            return "the other device to answer on the secure channel"
        return self._WAITING_FOR.get(self._state, "the next step")

    def waited(self, now: float) -> float | None:
        """Seconds since the current state was entered (``None`` before :meth:`start`)."""
        return None if self._entered_at is None else max(0.0, now - self._entered_at)

    @property
    def finished(self) -> bool:
        """Whether the machine reached DONE or FAILED."""
        return self._state in _TERMINAL

    @property
    def error(self) -> LoginFailed | None:
        """Why the login failed, once FAILED."""
        return self._error

    def __repr__(self) -> str:
        return f"{type(self).__name__}(qr_role={self._qr_role.name}, state={self._state.name})"

    # --- inputs common to both roles ----------------------------------------------------------------------

    def start(self, *, now: float) -> list[Action]:
        """The driver starts creating or joining the rendezvous session."""
        self._enter(self._next(Input.START), now)
        return [Starting()]

    def channel_established(
        self, check_code: CheckCode, *, now: float, profile: HpkeProfile | None = None
    ) -> list[Action]:
        """The secure channel is up (G: after LoginInitiate; S: after LoginOk). ``profile``: the Gen-2 channel
        profile it uses, reported in :class:`EstablishingSecureChannel`."""
        to = self._next(Input.CHANNEL_ESTABLISHED)
        self._check_code = check_code
        scanned = self._qr_role is Role.SCANNER
        actions: list[Action] = [EstablishingSecureChannel(check_code if scanned else None, not scanned, profile)]
        self._enter(to, now)
        return actions + self._after_channel(now)

    def check_code_entered(self, entered: str, *, now: float) -> list[Action]:
        """The user typed the check code shown by the other device (only on the device that showed the QR).

        A mismatch ends the login: the channel may be intercepted (docs/protocol.md, "Roles").
        """
        to = self._next(Input.CHECK_CODE_ENTERED)
        if self._check_code is None or not self._check_code.matches(entered):
            return self._fail(CheckCodeMismatch, FailureReason.USER_CANCELLED)
        self._enter(to, now)
        actions: list[Action] = []
        held, self._held = self._held, []
        for data in held:
            if self.finished:
                break
            actions += self._receive(data, now)
        return actions

    def message_received(self, data: bytes, *, now: float) -> list[Action]:
        """A decrypted plaintext arrived from the peer."""
        if self._state in _BEFORE_CHANNEL or self.finished:
            raise IllegalTransition(type(self).__name__, self._state.name, "message_received")
        if self._state is FlowState.AWAITING_CHECK_CODE:
            return self._hold(data)
        return self._receive(data, now)

    def cancel(self) -> list[Action]:
        """The local user cancels; the peer is told ``user_cancelled`` if the channel exists. Idempotent."""
        if self.finished:
            return []
        return self._fail(LoginCancelled, FailureReason.USER_CANCELLED)

    def abort(
        self,
        cause: BaseException,
        *,
        reason: FailureReason | None = FailureReason.USER_CANCELLED,
        now: float | None = None,
    ) -> list[Action]:
        """The driver gives up because of ``cause`` (HTTP, homeserver, OAuth or channel error).

        ``reason`` is what the peer is told; pass ``None`` when the channel itself is broken, and
        ``FailureReason.UNSUPPORTED_PROTOCOL`` when the homeserver turns out not to offer the device grant.
        The :class:`LoginAborted` error has ``cause`` as its ``__cause__``; its message says what happened,
        what the login was waiting for (:attr:`waiting_for`) and, given ``now``, for how long. Idempotent.
        """
        if self.finished:
            return []
        detail = f"{describe_cause(cause)} while waiting for {self.waiting_for}{self._waited_text(now)}"
        return self._fail(LoginAborted, reason, detail=detail, cause=cause)

    def timeout(self, *, now: float) -> list[Action]:
        """The clock moved; fails the login if :attr:`deadline` has passed, else does nothing."""
        if self.finished or self._deadline is None or now < self._deadline:
            return []
        error, reason = self._timeout_failure(now)
        waited = self._waited_text(now)
        if error is FlowTimeout:
            detail = f"timed out while waiting for {self.waiting_for}{waited}"
        elif error is AuthorizationExpired:
            detail = f"{error.default_detail} while waiting for {self.waiting_for}{waited}"
        else:
            detail = f"{error.default_detail}{waited}"
        return self._fail(error, reason, detail=detail)

    # --- machinery ----------------------------------------------------------------------------------------

    def _next(self, on: Input) -> FlowState:
        to = self._table.get((self._state, on))
        if to is None:
            raise IllegalTransition(type(self).__name__, self._state.name, on.value)
        return to

    def _waited_text(self, now: float | None) -> str:
        waited = None if now is None else self.waited(now)
        return "" if waited is None else f" (waited {waited:.0f} s)"

    def _enter(self, state: FlowState, now: float) -> None:
        self._entered_at = now
        self._state = state
        self._deadline = None if state in _TERMINAL else self._deadline_for(state, now)

    def _message_deadline(self, now: float) -> float | None:
        return None if self._timeouts.message is None else now + self._timeouts.message

    def _hold(self, data: bytes) -> list[Action]:
        # The device that showed the QR must not act on anything before its user confirmed the check code
        # (docs/protocol.md, "Roles"), so messages wait unread. Only the peer ending the login is honoured at once:
        # stopping cannot be abused, and the user should not have to type a code for a login that is over.
        try:
            message = parse_message(data)
        except MessageError:
            message = None
        if isinstance(message, FailureMessage | DeclinedMessage):
            return self._peer_ended(message)
        self._held.append(bytes(data))
        return []

    def _receive(self, data: bytes, now: float) -> list[Action]:
        try:
            message = parse_message(data)
        except MessageError as error:
            return self._fail(
                UnexpectedMessage, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, detail=f"unreadable message: {error}"
            )
        if isinstance(message, FailureMessage | DeclinedMessage):
            return self._peer_ended(message)
        to = self._table.get((self._state, message.type))
        if to is None:
            return self._fail(
                UnexpectedMessage,
                FailureReason.UNEXPECTED_MESSAGE_RECEIVED,
                detail=f"{message.type} is not expected in state {self._state.name}",
            )
        return self._on_message(message, to, now)

    def _peer_ended(self, message: FailureMessage | DeclinedMessage) -> list[Action]:
        if isinstance(message, DeclinedMessage):
            return self._finish(LoginDeclined(by_peer=True))
        error_type = self._error_for_peer_reason(message.reason)
        return self._finish(error_type(reason=message.reason, by_peer=True))

    def _error_for_peer_reason(self, reason: str) -> type[LoginFailed]:
        return _ERROR_FOR_REASON.get(reason, LoginFailed)

    def _fail(
        self,
        error_type: type[LoginFailed],
        reason: FailureReason | None,
        *,
        detail: str | None = None,
        cause: BaseException | None = None,
    ) -> list[Action]:
        """Tell the peer ``reason`` (if a channel exists to carry it), then end with ``error_type``."""
        actions: list[Action] = []
        sent = reason if self._state not in _BEFORE_CHANNEL else None
        if sent is not None:
            actions.append(SendMessage(FailureMessage(reason=sent)))
        error = error_type(detail, reason=sent)
        error.__cause__ = cause
        return actions + self._finish(error)

    def _finish(self, error: LoginFailed) -> list[Action]:
        self._state = FlowState.FAILED
        self._deadline = None
        self._error = error
        self._held.clear()
        return [Failed(error)]

    # --- per-role hooks -----------------------------------------------------------------------------------

    _WAITING_FOR: ClassVar[dict[FlowState, str]] = {
        FlowState.IDLE: "the login to start",
        FlowState.AWAITING_CHECK_CODE: "the user to type the check code the other device shows",
    }
    """:attr:`waiting_for` per state; each role adds its own states."""

    def _after_channel(self, now: float) -> list[Action]:
        """What this role does as soon as the channel is up (before any check code is typed)."""
        return []

    def _on_message(self, message: Message, to: FlowState, now: float) -> list[Action]:
        """Handle a message the table accepts in the current state; ``to`` is the table's next state."""
        raise NotImplementedError

    def _deadline_for(self, state: FlowState, now: float) -> float | None:
        return self._message_deadline(now)

    def _timeout_failure(self, now: float) -> tuple[type[LoginFailed], FailureReason | None]:
        return FlowTimeout, FailureReason.USER_CANCELLED
