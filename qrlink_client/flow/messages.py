"""The seven ``m.login.*`` messages sent over the secure channel, typed, with a tolerant parser.

Each message is a frozen dataclass; :meth:`Message.to_json` gives the UTF-8 JSON plaintext to encrypt, and
:func:`parse_message` turns a decrypted plaintext back into a message or raises a :class:`MessageError`
subclass (never anything else).

What the parser tolerates, because real clients send it:

- ``m.login.protocols`` with ``base_url`` (newest MSC) or ``homeserver`` (MSC 2024; a URL with trailing slash
  from rust-sdk, a server name from js-sdk). ``base_url`` wins when both are present.
- ``null`` for every optional field (rust-sdk writes ``"verification_uri_complete": null``,
  ``"homeserver": null`` and ``"backup": null``).
- unknown ``m.login.failure`` reasons (kept as plain strings), unknown extra fields (ignored).

Emitting: the newest MSC shape, except that :class:`ProtocolsMessage` names its homeserver field after the
generation (``homeserver`` for Gen-1 peers, ``base_url`` for Gen-2); optional fields that are ``None`` are
left out rather than written as ``null``.

The wire format: docs/protocol.md, "The m.login.* messages".
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._json import loads
from .errors import InvalidField, MalformedMessage, MissingField, UnknownMessageType
from .homeserver import Homeserver

if TYPE_CHECKING:
    from ..e2ee.secrets_bundle import SecretsBundle

__all__ = [
    "DEVICE_AUTHORIZATION_GRANT",
    "DeclinedMessage",
    "DeviceAuthorizationGrantInfo",
    "FailureMessage",
    "FailureReason",
    "HomeserverField",
    "Message",
    "MessageType",
    "ProtocolAcceptedMessage",
    "ProtocolMessage",
    "ProtocolsMessage",
    "SecretsMessage",
    "SuccessMessage",
    "parse_message",
]

DEVICE_AUTHORIZATION_GRANT = "device_authorization_grant"
"""The one sign-in protocol MSC4108 defines: OAuth 2.0 device authorization grant (RFC 8628)."""


class MessageType(enum.StrEnum):
    """The ``type`` of each message."""

    PROTOCOLS = "m.login.protocols"
    PROTOCOL = "m.login.protocol"
    PROTOCOL_ACCEPTED = "m.login.protocol_accepted"
    SUCCESS = "m.login.success"
    DECLINED = "m.login.declined"
    FAILURE = "m.login.failure"
    SECRETS = "m.login.secrets"


class FailureReason(enum.StrEnum):
    """The ``reason`` values of ``m.login.failure`` (newest MSC4108)."""

    AUTHORIZATION_EXPIRED = "authorization_expired"
    DEVICE_ALREADY_EXISTS = "device_already_exists"
    DEVICE_NOT_FOUND = "device_not_found"
    UNEXPECTED_MESSAGE_RECEIVED = "unexpected_message_received"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    USER_CANCELLED = "user_cancelled"
    UNABLE_TO_OPEN_VERIFICATION_URI = "unable_to_open_verification_uri"
    """Newest MSC only; older rust-sdk reads it as a custom reason, which still ends the login."""


class HomeserverField(enum.StrEnum):
    """Which key of ``m.login.protocols`` carries the homeserver."""

    HOMESERVER = "homeserver"
    """MSC4108 2024 (Gen-1 peers)."""
    BASE_URL = "base_url"
    """Newest MSC4108 (Gen-2 peers)."""


class Message:
    """Base class of the ``m.login.*`` messages."""

    type: ClassVar[MessageType]

    def to_content(self) -> dict[str, Any]:
        """The JSON object without ``type``."""
        return {}

    def to_json(self) -> bytes:
        """The UTF-8 JSON plaintext, ``type`` first, ready for the channel's ``encrypt``."""
        return json.dumps({"type": str(self.type), **self.to_content()}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ProtocolsMessage(Message):
    """``m.login.protocols`` (existing → new): the protocols the existing device offers and its homeserver."""

    type: ClassVar[MessageType] = MessageType.PROTOCOLS
    protocols: tuple[str, ...]
    homeserver: str
    homeserver_field: HomeserverField = HomeserverField.BASE_URL

    def to_content(self) -> dict[str, Any]:
        return {"protocols": list(self.protocols), str(self.homeserver_field): self.homeserver}

    @property
    def location(self) -> Homeserver:
        """The homeserver as a :class:`Homeserver` (URL or server name)."""
        return Homeserver.parse(self.homeserver)


@dataclass(frozen=True)
class DeviceAuthorizationGrantInfo:
    """``m.login.protocol.device_authorization_grant``: where the user approves the new device."""

    verification_uri: str
    verification_uri_complete: str | None = None

    def to_content(self) -> dict[str, Any]:
        content = {"verification_uri": self.verification_uri}
        if self.verification_uri_complete is not None:
            content["verification_uri_complete"] = self.verification_uri_complete
        return content

    @property
    def uri_to_open(self) -> str:
        """``verification_uri_complete`` when given (it pre-fills the user code), else ``verification_uri``."""
        return self.verification_uri_complete or self.verification_uri


@dataclass(frozen=True)
class ProtocolMessage(Message):
    """``m.login.protocol`` (new → existing): the chosen protocol, its grant details and the new device ID.

    ``device_authorization_grant`` is ``None`` only when ``protocol`` is something else (which the existing
    device answers with ``unsupported_protocol``).
    """

    type: ClassVar[MessageType] = MessageType.PROTOCOL
    device_id: str
    device_authorization_grant: DeviceAuthorizationGrantInfo | None
    protocol: str = DEVICE_AUTHORIZATION_GRANT

    def to_content(self) -> dict[str, Any]:
        content: dict[str, Any] = {"protocol": self.protocol}
        if self.device_authorization_grant is not None:
            content["device_authorization_grant"] = self.device_authorization_grant.to_content()
        content["device_id"] = self.device_id
        return content


@dataclass(frozen=True)
class ProtocolAcceptedMessage(Message):
    """``m.login.protocol_accepted`` (existing → new): the verification URI is open; start polling."""

    type: ClassVar[MessageType] = MessageType.PROTOCOL_ACCEPTED


@dataclass(frozen=True)
class SuccessMessage(Message):
    """``m.login.success`` (new → existing): the new device holds its tokens."""

    type: ClassVar[MessageType] = MessageType.SUCCESS


@dataclass(frozen=True)
class DeclinedMessage(Message):
    """``m.login.declined`` (new → existing): the user denied the grant."""

    type: ClassVar[MessageType] = MessageType.DECLINED


@dataclass(frozen=True)
class FailureMessage(Message):
    """``m.login.failure`` (either side): the login ends, for ``reason``.

    ``reason`` is a :class:`FailureReason` when known, else the peer's string. ``homeserver`` (optional, from
    the existing device) is parsed but never emitted: rust-sdk reads it as a URL and would reject a server name.
    """

    type: ClassVar[MessageType] = MessageType.FAILURE
    reason: str
    homeserver: str | None = None

    def to_content(self) -> dict[str, Any]:
        return {"reason": str(self.reason)}


@dataclass(frozen=True)
class SecretsMessage(Message):
    """``m.login.secrets`` (existing → new): the private cross-signing keys and, optionally, the backup key.

    Its ``repr`` shows public keys only (see :class:`~qrlink_client.e2ee.SecretsBundle`).
    """

    type: ClassVar[MessageType] = MessageType.SECRETS
    secrets: SecretsBundle = field()

    def to_content(self) -> dict[str, Any]:
        return self.secrets.to_content()


# --- parsing ------------------------------------------------------------------------------------------------


def parse_message(data: bytes | str) -> Message:
    """Parse a decrypted plaintext into its message.

    Raises :class:`MalformedMessage` (not UTF-8, not I-JSON, not an object), :class:`MissingField`,
    :class:`InvalidField` or :class:`UnknownMessageType`; never any other exception, whatever the input.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("message is not UTF-8") from None
    else:
        text = data
    try:
        # The shared reader also refuses nesting deeper than the stack, lone surrogates and NaN.
        obj = loads(text)
    except ValueError:
        raise MalformedMessage("message is not JSON") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("message is not a JSON object")
    message_type = obj.get("type")
    if message_type is None:
        raise MissingField("message", "type")
    if not isinstance(message_type, str):
        raise InvalidField("message", "type", "is not a string")
    parser = _PARSERS.get(message_type)
    if parser is None:
        raise UnknownMessageType(message_type)
    return parser(obj)


def _optional_str(obj: Mapping[str, Any], message_type: str, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(message_type, name, "is not a string")
    return value


def _required_str(obj: Mapping[str, Any], message_type: str, name: str) -> str:
    value = _optional_str(obj, message_type, name)
    if value is None:
        raise MissingField(message_type, name)
    if not value:
        raise InvalidField(message_type, name, "is empty")
    return value


def _parse_protocols(obj: Mapping[str, Any]) -> ProtocolsMessage:
    t = MessageType.PROTOCOLS
    protocols = obj.get("protocols")
    if protocols is None:
        raise MissingField(t, "protocols")
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise InvalidField(t, "protocols", "is not a list of strings")
    base_url = _optional_str(obj, t, "base_url")
    if base_url is not None:
        value, source = base_url, HomeserverField.BASE_URL
    else:
        homeserver = _optional_str(obj, t, "homeserver")
        if homeserver is None:
            raise MissingField(t, "base_url")
        value, source = homeserver, HomeserverField.HOMESERVER
    if not value.strip():
        raise InvalidField(t, str(source), "is empty")
    return ProtocolsMessage(protocols=tuple(protocols), homeserver=value, homeserver_field=source)


def _parse_protocol(obj: Mapping[str, Any]) -> ProtocolMessage:
    t = MessageType.PROTOCOL
    protocol = _required_str(obj, t, "protocol")
    device_id = _required_str(obj, t, "device_id")
    grant: DeviceAuthorizationGrantInfo | None = None
    grant_obj = obj.get("device_authorization_grant")
    if protocol == DEVICE_AUTHORIZATION_GRANT or grant_obj is not None:
        if grant_obj is None:
            raise MissingField(t, "device_authorization_grant")
        if not isinstance(grant_obj, dict):
            raise InvalidField(t, "device_authorization_grant", "is not an object")
        grant = DeviceAuthorizationGrantInfo(
            verification_uri=_required_str(grant_obj, t, "verification_uri"),
            verification_uri_complete=_optional_str(grant_obj, t, "verification_uri_complete"),
        )
    return ProtocolMessage(device_id=device_id, device_authorization_grant=grant, protocol=protocol)


def _parse_failure(obj: Mapping[str, Any]) -> FailureMessage:
    t = MessageType.FAILURE
    reason = _required_str(obj, t, "reason")
    known = reason in FailureReason.__members__.values()
    return FailureMessage(
        reason=FailureReason(reason) if known else reason,
        homeserver=_optional_str(obj, t, "homeserver"),
    )


def _parse_secrets(obj: Mapping[str, Any]) -> SecretsMessage:
    # Imported here, not at the top: the e2ee package loads vodozemac, and every other message (and both
    # state machines up to the last step) works without the e2ee extra.
    from ..e2ee.errors import InvalidSecretsBundle
    from ..e2ee.secrets_bundle import SecretsBundle

    try:
        bundle = SecretsBundle.from_content(obj)
    except InvalidSecretsBundle as error:
        # The bundle's own message names the field and never a value.
        raise InvalidField(MessageType.SECRETS, "cross_signing/backup", f"is invalid: {error}") from None
    return SecretsMessage(secrets=bundle)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    MessageType.PROTOCOLS: _parse_protocols,
    MessageType.PROTOCOL: _parse_protocol,
    MessageType.PROTOCOL_ACCEPTED: lambda obj: ProtocolAcceptedMessage(),
    MessageType.SUCCESS: lambda obj: SuccessMessage(),
    MessageType.DECLINED: lambda obj: DeclinedMessage(),
    MessageType.FAILURE: _parse_failure,
    MessageType.SECRETS: _parse_secrets,
}
