"""Errors of the ``m.login.*`` message protocol (docs/protocol.md, "The m.login.* messages").

Three families, all under :class:`FlowError`:

- :class:`MessageError`: a plaintext that is not a well-formed ``m.login.*`` message (the parser's errors).
- :class:`IllegalTransition`: the caller fed a state machine an input its current state does not accept. This is
  a bug in the driver, never something a peer can cause.
- :class:`LoginFailed`: the login ended without success. Each subclass is one meaning, whether this side
  decided it (``by_peer`` is false; the peer has been told, where a channel exists) or the peer reported it
  in ``m.login.failure`` / ``m.login.declined`` (``by_peer`` is true). ``reason`` is the ``m.login.failure``
  reason that went over the wire, if any.

Messages never carry message contents, check codes or secrets.
"""

from __future__ import annotations

from ..errors import QrLinkError

__all__ = [
    "AuthorizationExpired",
    "CheckCodeMismatch",
    "DeviceAlreadyExists",
    "DeviceNotFound",
    "FlowError",
    "FlowTimeout",
    "IllegalTransition",
    "InvalidField",
    "LoginAborted",
    "LoginCancelled",
    "LoginDeclined",
    "LoginFailed",
    "MalformedMessage",
    "MessageError",
    "MissingField",
    "UnexpectedMessage",
    "UnknownMessageType",
    "UnsupportedProtocol",
    "VerificationUriUnavailable",
]


class FlowError(QrLinkError):
    """Base class of every error of the ``m.login.*`` protocol layer."""


# --- parsing ------------------------------------------------------------------------------------------------


class MessageError(FlowError, ValueError):
    """A plaintext is not a well-formed ``m.login.*`` message."""


class MalformedMessage(MessageError):
    """The plaintext is not UTF-8, not JSON, or not a JSON object."""


class UnknownMessageType(MessageError):
    """The ``type`` is not one of the seven ``m.login.*`` messages."""

    def __init__(self, message_type: str) -> None:
        # The type is protocol vocabulary, not user data, but cap it: a peer chooses it.
        shown = message_type if len(message_type) <= 64 else message_type[:64] + "…"
        super().__init__(f"unknown message type {shown!r}")
        self.message_type = message_type


class MissingField(MessageError):
    """A required field is absent (or ``null``)."""

    def __init__(self, message_type: str, field: str) -> None:
        super().__init__(f"{message_type}: missing required field {field!r}")
        self.message_type = message_type
        self.field = field


class InvalidField(MessageError):
    """A field has the wrong JSON type or an unusable value."""

    def __init__(self, message_type: str, field: str, problem: str) -> None:
        super().__init__(f"{message_type}: field {field!r} {problem}")
        self.message_type = message_type
        self.field = field


# --- driver misuse ------------------------------------------------------------------------------------------


class IllegalTransition(FlowError):
    """An input arrived that the state machine's current state does not accept (a driver bug)."""

    def __init__(self, machine: str, state: str, what: str) -> None:
        super().__init__(f"{machine}: {what} is not allowed in state {state}")
        self.state = state
        self.input = what


# --- outcomes -----------------------------------------------------------------------------------------------


class LoginFailed(FlowError):
    """The login ended without success.

    :attr:`by_peer` says whether the other device reported it; :attr:`reason` is the ``m.login.failure``
    reason that was sent or received (``None`` if no failure message was involved, e.g. ``m.login.declined``
    or a failure before the secure channel existed).
    """

    default_detail = "the login failed"

    def __init__(self, detail: str | None = None, *, reason: str | None = None, by_peer: bool = False) -> None:
        text = detail or self.default_detail
        if by_peer:
            text = f"the other device reported: {text}"
        super().__init__(text)
        self.reason = reason
        self.by_peer = by_peer


class LoginCancelled(LoginFailed):
    """A user cancelled (``user_cancelled``): this device's user, or the other device's."""

    default_detail = "the login was cancelled"


class LoginDeclined(LoginFailed):
    """The user denied the new device at the authorization server (``m.login.declined``; js-sdk sends
    ``m.login.failure`` ``user_cancelled`` instead, which is read as this at that point of the protocol)."""

    default_detail = "the sign-in was declined"


class AuthorizationExpired(LoginFailed):
    """The device authorization grant expired before the user approved it (``authorization_expired``)."""

    default_detail = "the device authorization grant expired"


class DeviceAlreadyExists(LoginFailed):
    """The device ID the new device asked for is already in use (``device_already_exists``)."""

    default_detail = "the device ID is already in use"


class DeviceNotFound(LoginFailed):
    """The new device did not appear on the homeserver in time (``device_not_found``)."""

    default_detail = "the new device did not appear on the homeserver"


class UnexpectedMessage(LoginFailed):
    """A message of the wrong type, or an unreadable one, arrived (``unexpected_message_received``)."""

    default_detail = "an unexpected message arrived"


class UnsupportedProtocol(LoginFailed):
    """No sign-in protocol both sides support (``unsupported_protocol``)."""

    default_detail = "no supported sign-in protocol"


class VerificationUriUnavailable(LoginFailed):
    """The existing device could not open the verification URI (``unable_to_open_verification_uri``)."""

    default_detail = "the verification URI could not be opened"


class CheckCodeMismatch(LoginFailed):
    """The check code the user typed differs from this device's: the channel may be intercepted.

    The peer is told ``user_cancelled`` (MSC4108 has no reason for this), so it sees :class:`LoginCancelled`.
    """

    default_detail = "the check code does not match"


class FlowTimeout(LoginFailed):
    """Nothing arrived before the current step's deadline.

    The peer, if the channel exists, is told ``user_cancelled``: MSC4108 has no timeout reason, and giving up
    is this side cancelling.
    """

    default_detail = "timed out waiting for the next step"


class LoginAborted(LoginFailed):
    """The driver stopped the login because of an error outside the protocol (HTTP, channel, homeserver);
    the original error is the ``__cause__``."""

    default_detail = "the login was aborted"
