"""The ``m.login.*`` message protocol of sign in with QR code (MSC4108 §4), as sans-I/O state machines.

- :class:`NewDeviceLogin` and :class:`ExistingDeviceLogin`: one machine per role, built for the device that
  shows the QR or scans it (that decides who speaks first, docs/protocol.md, "Order"). Inputs are method calls that say
  what happened (a message arrived, the channel is up, the token endpoint answered, time passed); each returns
  :class:`Action` objects to carry out (send a message, poll a token, check a device, show progress) and ends
  with :class:`Done` or :class:`Failed`. No I/O, no clock (the caller passes ``now``), no ``await``.
- :mod:`~qrlink_client.flow.messages`: the seven messages, typed, and their tolerant parser.
- Errors: :class:`MessageError` (parsing), :class:`IllegalTransition` (driver misuse) and :class:`LoginFailed`
  with one subclass per way a login ends.

See ``docs/flow.md`` for the tables, and ``examples/flow_by_hand.py`` for both machines driven by hand.
"""

from ._machine import FlowState, FlowTimeouts, Input, LoginMachine, Transition
from .actions import (
    Action,
    CheckDeviceUnused,
    Done,
    EstablishingSecureChannel,
    ExistingDeviceResult,
    Failed,
    NewDeviceResult,
    OpenVerificationUri,
    PollToken,
    Progress,
    SendMessage,
    StartDeviceAuthorization,
    Starting,
    SyncingSecrets,
    WaitForDevice,
    WaitingForAuth,
    WaitingForToken,
)
from .errors import (
    AuthorizationExpired,
    CheckCodeMismatch,
    DeviceAlreadyExists,
    DeviceNotFound,
    FlowError,
    FlowTimeout,
    IllegalTransition,
    InvalidField,
    LoginAborted,
    LoginCancelled,
    LoginDeclined,
    LoginFailed,
    MalformedMessage,
    MessageError,
    MissingField,
    UnexpectedMessage,
    UnknownMessageType,
    UnsupportedProtocol,
    VerificationUriUnavailable,
)
from .existing_device import ExistingDeviceLogin
from .homeserver import Homeserver
from .messages import (
    DEVICE_AUTHORIZATION_GRANT,
    DeclinedMessage,
    DeviceAuthorizationGrantInfo,
    FailureMessage,
    FailureReason,
    HomeserverField,
    Message,
    MessageType,
    ProtocolAcceptedMessage,
    ProtocolMessage,
    ProtocolsMessage,
    SecretsMessage,
    SuccessMessage,
    parse_message,
)
from .new_device import DeviceAuthorizationGrant, NewDeviceLogin

__all__ = [
    "DEVICE_AUTHORIZATION_GRANT",
    "Action",
    "AuthorizationExpired",
    "CheckCodeMismatch",
    "CheckDeviceUnused",
    "DeclinedMessage",
    "DeviceAlreadyExists",
    "DeviceAuthorizationGrant",
    "DeviceAuthorizationGrantInfo",
    "DeviceNotFound",
    "Done",
    "EstablishingSecureChannel",
    "ExistingDeviceLogin",
    "ExistingDeviceResult",
    "Failed",
    "FailureMessage",
    "FailureReason",
    "FlowError",
    "FlowState",
    "FlowTimeout",
    "FlowTimeouts",
    "Homeserver",
    "HomeserverField",
    "IllegalTransition",
    "Input",
    "InvalidField",
    "LoginAborted",
    "LoginCancelled",
    "LoginDeclined",
    "LoginFailed",
    "LoginMachine",
    "MalformedMessage",
    "Message",
    "MessageError",
    "MessageType",
    "MissingField",
    "NewDeviceLogin",
    "NewDeviceResult",
    "OpenVerificationUri",
    "PollToken",
    "Progress",
    "ProtocolAcceptedMessage",
    "ProtocolMessage",
    "ProtocolsMessage",
    "SecretsMessage",
    "SendMessage",
    "StartDeviceAuthorization",
    "Starting",
    "SuccessMessage",
    "SyncingSecrets",
    "Transition",
    "UnexpectedMessage",
    "UnknownMessageType",
    "UnsupportedProtocol",
    "VerificationUriUnavailable",
    "WaitForDevice",
    "WaitingForAuth",
    "WaitingForToken",
    "parse_message",
]
