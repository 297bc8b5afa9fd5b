"""What the state machines ask their driver to do, and the progress they report.

Every input of :class:`~qrlink_client.flow.NewDeviceLogin` / :class:`~qrlink_client.flow.ExistingDeviceLogin`
returns a list of these, in the order to carry them out. Three kinds:

- **work** for the driver: :class:`SendMessage` (encrypt and write to the rendezvous),
  :class:`StartDeviceAuthorization`, :class:`PollToken`, :class:`CheckDeviceUnused`,
  :class:`OpenVerificationUri`, :class:`WaitForDevice`. The driver reports the outcome back as an input.
- **progress** for the app's UI (subclasses of :class:`Progress`), modelled on matrix-rust-sdk's
  ``LoginProgress`` / ``GrantLoginProgress``: :class:`Starting` → :class:`EstablishingSecureChannel` →
  :class:`WaitingForAuth` (existing device) / :class:`WaitingForToken` (new device) → :class:`SyncingSecrets`
  → :class:`Done`.
- **the end**: :class:`Done` or :class:`Failed`, always last. A :class:`SendMessage` that tells the peer why
  comes right before :class:`Failed`.

Times (``deadline``, ``expires_at``) are in the caller's own clock, the one it passes as ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..channel import CheckCode, HpkeProfile
from .errors import LoginFailed
from .homeserver import Homeserver
from .messages import Message

if TYPE_CHECKING:
    from ..e2ee.secrets_bundle import SecretsBundle

__all__ = [
    "Action",
    "CheckDeviceUnused",
    "Done",
    "EstablishingSecureChannel",
    "ExistingDeviceResult",
    "Failed",
    "NewDeviceResult",
    "OpenVerificationUri",
    "PollToken",
    "Progress",
    "SendMessage",
    "StartDeviceAuthorization",
    "Starting",
    "SyncingSecrets",
    "WaitForDevice",
    "WaitingForAuth",
    "WaitingForToken",
]


class Action:
    """Base class of everything a state machine returns."""


# --- work for the driver ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendMessage(Action):
    """Encrypt ``message.to_json()`` with the secure channel and write it to the rendezvous session."""

    message: Message


@dataclass(frozen=True)
class StartDeviceAuthorization(Action):
    """New device: discover the homeserver's OAuth server, register a client and request device authorization
    (RFC 8628 §3.1) for ``device_id``; then call ``device_authorization_ready`` (or ``abort``)."""

    homeserver: Homeserver
    device_id: str


@dataclass(frozen=True)
class PollToken(Action):
    """New device: poll the token endpoint (honouring ``interval`` and ``slow_down``) until the grant is
    approved, denied or expires at ``expires_at``; then call ``token_granted`` / ``access_denied`` /
    ``grant_expired``."""

    expires_at: float


@dataclass(frozen=True)
class CheckDeviceUnused(Action):
    """Existing device: ``GET /_matrix/client/v3/devices/{device_id}`` (percent-encoded: IDs may hold ``/`` and
    ``+``), then hand its status to ``device_checked``: only a 404 means unused, anything else ends the login."""

    device_id: str


@dataclass(frozen=True)
class OpenVerificationUri(Action):
    """Existing device: open ``uri`` for the user (``verification_uri_complete`` if given, else
    ``verification_uri``); then ``verification_uri_opened``, ``verification_uri_unavailable`` or ``cancel``."""

    uri: str
    verification_uri: str


@dataclass(frozen=True)
class WaitForDevice(Action):
    """Existing device: poll ``GET /devices/{device_id}`` until it answers 200, then call ``device_appeared``;
    at ``deadline`` call ``timeout``."""

    device_id: str
    deadline: float


# --- progress -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress(Action):
    """Base class of the steps an app can render.

    :attr:`time_left_s` and :attr:`deadline` say how long the step may wait before the login fails, for a
    countdown. The machines leave them ``None``; the drivers of :mod:`qrlink_client.login` fill them from the
    machine's :attr:`~qrlink_client.flow.LoginMachine.deadline` and the rendezvous session's expiry, whichever
    comes first. Neither takes part in equality.
    """

    time_left_s: float | None = field(default=None, kw_only=True, compare=False)
    """Seconds left when the step was reported (``None``: no limit, or not known)."""
    deadline: float | None = field(default=None, kw_only=True, compare=False)
    """The same limit on the caller's monotonic clock (:func:`time.monotonic` in the drivers)."""


@dataclass(frozen=True)
class Starting(Progress):
    """The rendezvous session and secure channel are being set up."""


@dataclass(frozen=True)
class EstablishingSecureChannel(Progress):
    """The channel is up; the user must compare the check code.

    On the device that scanned the QR, :attr:`check_code` is the code to **show**. On the device that showed
    the QR it is ``None`` and :attr:`must_enter_code` is true: the app asks the user to type the code the other
    device shows (showing this side's own code would defeat the check).

    :attr:`profile` is the Gen-2 channel profile in use (docs/protocol.md, "Profiles"): the one this device
    showed its code with, or, when it scanned, the one the code's layout implied (``element-x`` for Element X's
    codes) unless the app chose one. ``None`` for Gen-1.
    """

    check_code: CheckCode | None
    must_enter_code: bool
    profile: HpkeProfile | None = None


@dataclass(frozen=True)
class WaitingForAuth(Progress):
    """Existing device: the user approves the new device at ``verification_uri`` in a browser."""

    verification_uri: str


@dataclass(frozen=True)
class WaitingForToken(Progress):
    """New device: show ``user_code`` (RFC 8628 §3.3.1) while the user approves on the existing device."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None


@dataclass(frozen=True)
class SyncingSecrets(Progress):
    """The new device is signed in; the secrets are on their way."""


# --- the end ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewDeviceResult:
    """What the new device ends with: its device ID and the user's secrets (import them, then upload keys)."""

    device_id: str
    secrets: SecretsBundle


@dataclass(frozen=True)
class ExistingDeviceResult:
    """What the existing device ends with: the ID of the device it signed in."""

    device_id: str


@dataclass(frozen=True)
class Done(Progress):
    """The login succeeded."""

    result: NewDeviceResult | ExistingDeviceResult


@dataclass(frozen=True)
class Failed(Action):
    """The login failed; :attr:`error` says why (a :class:`~qrlink_client.flow.LoginFailed` subclass)."""

    error: LoginFailed
