"""``qrlink peer``: a JSON-lines interop peer over the QR codec, the secure channels and the transports.

Other implementations' test suites drive this process to check their bytes against ours. The protocol is
documented in ``docs/peer.md``; in short: one JSON object per stdin line, one JSON object per stdout line, in
order. Success is ``{"ok": true, ...}``; every failure is
``{"ok": false, "error": "<ExceptionClassName>", "message": ...}`` and the process keeps running. A request's
``id`` field, if any, is echoed in its response.

The core is :class:`Peer`, a dispatcher of small functions over a table of handles (channels and handshakes);
it never raises and can be unit-tested in-process. :func:`serve` is the thin stdin/stdout driver around it.

Binary values travel as lower-case hex in fields ending ``_hex`` (upper case is accepted on input);
public keys as unpadded standard base64 in fields ending ``_b64``. Error messages never echo request values,
so a secret key sent in ``secret_hex`` cannot come back out in an error.

- :mod:`.dispatch`: :class:`Peer`, the op tables (``SYNC_OPS``, ``ASYNC_OPS``) and ``hello``.
- :mod:`.qr_ops`, :mod:`.channel_ops`: the codec and channel ops, synchronous and free of I/O.
- :mod:`.handshake_ops`: handshakes over a real rendezvous, run in the background.
- :mod:`.stdio`: :func:`serve`.
- :mod:`.errors`: :class:`PeerError` and its subclasses, and ``describe``, the message a failure is reported with.
"""

from ...request_fields import InvalidFieldValue, MissingField
from .dispatch import ASYNC_OPS as ASYNC_OPS
from .dispatch import IMPLEMENTATION as IMPLEMENTATION
from .dispatch import SYNC_OPS as SYNC_OPS
from .dispatch import AsyncOp as AsyncOp
from .dispatch import Peer
from .dispatch import SyncOp as SyncOp
from .errors import (
    BadJson,
    BadRequest,
    HandshakeFailed,
    HandshakePending,
    HandshakeTimeout,
    PeerError,
    UnknownChannel,
    UnknownHandshake,
    UnknownOp,
)
from .errors import describe as describe
from .handshake_ops import DEFAULT_WAIT_MS as DEFAULT_WAIT_MS
from .handshake_ops import Handshake as Handshake
from .handshake_ops import HandshakeState as HandshakeState
from .stdio import serve

__all__ = [
    "BadJson",
    "BadRequest",
    "HandshakeFailed",
    "HandshakePending",
    "HandshakeTimeout",
    "InvalidFieldValue",
    "MissingField",
    "Peer",
    "PeerError",
    "UnknownChannel",
    "UnknownHandshake",
    "UnknownOp",
    "serve",
]
