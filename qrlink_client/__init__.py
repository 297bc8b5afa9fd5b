"""qrlink_client: Matrix "sign in with QR code" (MSC4108 "Gen-1" and MSC4388 "Gen-2") for Python.

One device is already signed in (the *existing* device); the other is being signed in (the *new* device). One
of them shows a QR code, the other scans it, and the two talk through a rendezvous session over a secure
channel until the new device has its own tokens and the user's encryption secrets.

Where to start
--------------
- The new device: :func:`login_new_device` (returns a :class:`NewDeviceLoginResult`).
- The existing device: :func:`grant_login` (returns the new device's ID).

Either device shows the QR code (``show=ShowGen1(create_url)`` or ``show=ShowGen2(homeserver_url)``) or scans
it (``scanned=`` the bytes read from the code). Both report :class:`Progress` steps to one callback, and end
with a :class:`LoginFailed` subclass when the login fails. Runnable scripts of both sides are in the
repository's ``examples/`` folder; ``docs/client-guide.md`` walks through them.

The layers, from the bottom
---------------------------
- :mod:`qrlink_client.qr`: QR payloads of both generations (:func:`decode_qr`, :class:`Gen1QrCode`,
  :class:`Gen2QrCode`), rendering and image reading.
- :mod:`qrlink_client.transport`: the rendezvous sessions over HTTP (:class:`Gen1Transport`,
  :class:`Gen2Transport`, :class:`TransportOptions`).
- :mod:`qrlink_client.channel`: the secure channels (:class:`EciesChannel`, :class:`HpkeChannel`).
- :mod:`qrlink_client.handshake`: the channel handshake over a session, for both generations
  (:func:`show_qr`, :func:`scan_qr`).
- :mod:`qrlink_client.flow`: the ``m.login.*`` protocol as sans-I/O state machines.
- :mod:`qrlink_client.oauth`, :mod:`qrlink_client.discovery`, :mod:`qrlink_client.e2ee`: the OAuth 2.0 device
  grant, finding the servers, and the cross-signing and secret-storage pieces (:func:`bootstrap_user`).
- :mod:`qrlink_client.login`: the two functions above, which drive all of it.

Every error the library raises on purpose is a :class:`QrLinkError`.

Importing this package is cheap: each name below is imported from its module the first time it is used. The
E2EE parts (:func:`login_new_device`, :func:`grant_login`, :mod:`qrlink_client.e2ee`) need the ``e2ee`` extra
(vodozemac); everything else works without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import QrLinkError

if TYPE_CHECKING:
    from .channel import ChannelError, CheckCode, EciesChannel, HpkeChannel, HpkeProfile, SecureChannel
    from .discovery import gen1_create_url, well_known_base_url
    from .e2ee import (
        AlreadyBootstrapped,
        BootstrapResult,
        E2eeError,
        E2eeHomeserver,
        OlmDevice,
        SecretsBundle,
        SecretsSource,
        SecretStorageSecrets,
        StaticSecrets,
        bootstrap_user,
        publish_new_device,
    )
    from .flow import (
        Done,
        EstablishingSecureChannel,
        FlowTimeout,
        FlowTimeouts,
        LoginAborted,
        LoginDeclined,
        LoginFailed,
        Progress,
        Starting,
        SyncingSecrets,
        WaitingForAuth,
        WaitingForToken,
    )
    from .handshake import Handshake, ShowGen1, ShowGen2, UnknownGen2Profile, scan_qr, show_qr
    from .login import CallbackError, NewDeviceLoginResult, QrCodeReady, WrongQrCode, grant_login, login_new_device
    from .oauth import ClientMetadata
    from .qr import Gen1QrCode, Gen2QrCode, QrCode, QrCodeError, decode_qr
    from .transport import Gen1Transport, Gen2Transport, RendezvousError, SessionExpired, TransportOptions

__version__ = "0.1.0"

# name -> the submodule that defines it; imported on first use (PEP 562), so that `import qrlink_client` loads
# neither httpx nor cryptography nor the optional vodozemac.
_LAZY: dict[str, str] = {
    # the whole login, per device
    "login_new_device": "login",
    "grant_login": "login",
    "NewDeviceLoginResult": "login",
    "QrCodeReady": "login",
    "WrongQrCode": "login",
    "CallbackError": "login",
    # where the session lives
    "ShowGen1": "handshake",
    "ShowGen2": "handshake",
    "show_qr": "handshake",
    "scan_qr": "handshake",
    "Handshake": "handshake",
    "UnknownGen2Profile": "handshake",
    # progress and failures
    "Progress": "flow",
    "Starting": "flow",
    "EstablishingSecureChannel": "flow",
    "WaitingForToken": "flow",
    "WaitingForAuth": "flow",
    "SyncingSecrets": "flow",
    "Done": "flow",
    "LoginFailed": "flow",
    "LoginAborted": "flow",
    "LoginDeclined": "flow",
    "FlowTimeout": "flow",
    "FlowTimeouts": "flow",
    # QR codes
    "decode_qr": "qr",
    "QrCode": "qr",
    "Gen1QrCode": "qr",
    "Gen2QrCode": "qr",
    "QrCodeError": "qr",
    # transports and channels
    "Gen1Transport": "transport",
    "Gen2Transport": "transport",
    "TransportOptions": "transport",
    "RendezvousError": "transport",
    "SessionExpired": "transport",
    "SecureChannel": "channel",
    "EciesChannel": "channel",
    "HpkeChannel": "channel",
    "HpkeProfile": "channel",
    "CheckCode": "channel",
    "ChannelError": "channel",
    # servers and OAuth
    "well_known_base_url": "discovery",
    "gen1_create_url": "discovery",
    "ClientMetadata": "oauth",
    # end-to-end encryption (the e2ee extra)
    "E2eeHomeserver": "e2ee",
    "OlmDevice": "e2ee",
    "SecretsBundle": "e2ee",
    "SecretsSource": "e2ee",
    "SecretStorageSecrets": "e2ee",
    "StaticSecrets": "e2ee",
    "bootstrap_user": "e2ee",
    "BootstrapResult": "e2ee",
    "publish_new_device": "e2ee",
    "E2eeError": "e2ee",
    "AlreadyBootstrapped": "e2ee",
}

__all__ = [
    "AlreadyBootstrapped",
    "BootstrapResult",
    "CallbackError",
    "ChannelError",
    "CheckCode",
    "ClientMetadata",
    "Done",
    "E2eeError",
    "E2eeHomeserver",
    "EciesChannel",
    "EstablishingSecureChannel",
    "FlowTimeout",
    "FlowTimeouts",
    "Gen1QrCode",
    "Gen1Transport",
    "Gen2QrCode",
    "Gen2Transport",
    "Handshake",
    "HpkeChannel",
    "HpkeProfile",
    "LoginAborted",
    "LoginDeclined",
    "LoginFailed",
    "NewDeviceLoginResult",
    "OlmDevice",
    "Progress",
    "QrCode",
    "QrCodeError",
    "QrCodeReady",
    "QrLinkError",
    "RendezvousError",
    "SecretStorageSecrets",
    "SecretsBundle",
    "SecretsSource",
    "SecureChannel",
    "SessionExpired",
    "ShowGen1",
    "ShowGen2",
    "Starting",
    "StaticSecrets",
    "SyncingSecrets",
    "TransportOptions",
    "UnknownGen2Profile",
    "WaitingForAuth",
    "WaitingForToken",
    "WrongQrCode",
    "bootstrap_user",
    "decode_qr",
    "gen1_create_url",
    "grant_login",
    "login_new_device",
    "publish_new_device",
    "scan_qr",
    "show_qr",
    "well_known_base_url",
]

_E2EE_MODULES = frozenset({"login", "e2ee"})


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{module_name}", __name__)
    except ModuleNotFoundError as error:
        if module_name in _E2EE_MODULES and error.name == "vodozemac":
            raise ImportError(
                f"qrlink_client.{name} needs the e2ee extra (vodozemac): pip install 'qrlink[e2ee]'", name=error.name
            ) from error
        raise
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
