"""The handshake ops: real handshakes over a rendezvous server, run in the background, each with a handle and
the handle of its channel; then messages sent and received over the rendezvous on the established channel.

The handshake module (and with it httpx) is imported only when a handshake starts.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._b64 import b64encode
from ...channel import HpkeProfile, Role
from ...qr import Gen1Mode, Gen2Intent, QrPrefix, decode_qr
from ...request_fields import InvalidFieldValue, Request, Response
from ...request_fields import choice_field as _choice
from ...request_fields import hex_field as _hex
from ...request_fields import int_field as _int
from ...request_fields import non_negative_int_field as _positive_int
from ...request_fields import optional_str_field as _opt_str
from ...request_fields import required_hex_field as _req_hex
from ...request_fields import required_str_field as _req_str
from ._values import hpke_profile, plaintext, plaintext_fields
from .errors import HandshakeFailed, HandshakePending, HandshakeTimeout, describe
from .qr_ops import qr_fields

if TYPE_CHECKING:
    from ...handshake import Handshake as Link
    from .dispatch import Peer

__all__ = [
    "DEFAULT_WAIT_MS",
    "Handshake",
    "HandshakeState",
    "op_handshake_close",
    "op_handshake_receive",
    "op_handshake_send",
    "op_handshake_start",
    "op_handshake_status",
    "op_handshake_wait",
]

DEFAULT_WAIT_MS = 30_000
"""How long ``handshake_wait`` and ``handshake_receive`` wait when the request gives no ``timeout_ms``."""


class HandshakeState(enum.Enum):
    """Where a handshake run by the peer stands."""

    RUNNING = "running"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass
class Handshake:
    """A handshake the peer runs in the background over a real rendezvous, and its channel's handle."""

    channel_handle: str
    link: Link
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    @property
    def state(self) -> HandshakeState:
        if self.error is not None or (self.task is not None and self.task.cancelled()):
            return HandshakeState.FAILED
        if self.task is not None and self.task.done():
            return HandshakeState.ESTABLISHED
        return HandshakeState.RUNNING


async def op_handshake_start(peer: Peer, req: Request) -> Response:
    """Create (G) or join (S) a rendezvous session and run the handshake in the background.

    G answers as soon as the session exists, with the QR payload to hand to S; S answers once it has joined.
    Either side then calls ``handshake_wait`` (or polls ``handshake_status``) for the outcome.
    """
    role = _choice(req, "role", Role)
    secret = _hex(req, "secret_hex", required=False)
    if role is Role.GENERATOR:
        return await _start_generator(peer, req, secret)
    return await _start_scanner(peer, req, secret)


async def _start_generator(peer: Peer, req: Request, secret: bytes | None) -> Response:
    from ...handshake import ShowGen1, ShowGen2, ShowQr, show_qr

    generation = _int(req, "generation", (1, 2))
    nonce = _hex(req, "response_nonce_hex", required=False)
    show: ShowQr
    if generation == 1:
        show = ShowGen1(_req_str(req, "create_url"))
        reciprocate = _int(req, "mode", tuple(Gen1Mode), default=Gen1Mode.LOGIN) == Gen1Mode.RECIPROCATE
        server_name = _opt_str(req, "server_name")
    else:
        base_url = _req_str(req, "base_url")
        reciprocate = _int(req, "intent", tuple(Gen2Intent), default=Gen2Intent.LOGIN) == Gen2Intent.RECIPROCATE
        prefix = _choice(req, "prefix", QrPrefix, default=QrPrefix.IO_ELEMENT_MSC4388)
        profile = hpke_profile(req, generation, HpkeProfile.ELEMENT_X)
        assert profile is not None
        show = ShowGen2(base_url, qr_prefix=prefix, profile=profile)
        server_name = None
    link = await show_qr(
        peer.http_client(),
        show,
        reciprocate=reciprocate,
        server_name=server_name,
        secret_key=secret,
        response_nonce=nonce,
    )
    handle, hs = _register(peer, link)
    qr_bytes = link.qr.to_bytes()
    return {
        "handshake": handle,
        "channel": hs.channel_handle,
        "public_key_b64": b64encode(link.channel.public_key),
        "qr_hex": qr_bytes.hex(),
        # As qr_decode reads them: element-x's code carries the base URL without a root "/".
        **qr_fields(decode_qr(qr_bytes)),
        "profile": _profile_name(link),
    }


async def _start_scanner(peer: Peer, req: Request, secret: bytes | None) -> Response:
    from ...handshake import scan_qr

    qr = decode_qr(_req_hex(req, "qr_hex"))
    # No profile given: the one the code's layout implies (UnknownGen2Profile for a legacy u16/u16 code).
    profile = hpke_profile(req, qr.generation, None)
    link = await scan_qr(peer.http_client(), qr, secret_key=secret, profile=profile)
    handle, hs = _register(peer, link)
    return {
        "handshake": handle,
        "channel": hs.channel_handle,
        "public_key_b64": b64encode(link.channel.public_key),
        "generation": link.generation,
        "profile": _profile_name(link),
    }


def _profile_name(link: Link) -> str | None:
    """The Gen-2 channel profile a handshake uses, by its canonical name (``None`` for Gen-1)."""
    return None if link.profile is None else link.profile.value


def _register(peer: Peer, link: Link) -> tuple[str, Handshake]:
    """Add the handshake and its channel to the peer's tables and finish the handshake in the background."""
    channel_handle = peer.new_handle("ch")
    peer.channels[channel_handle] = link.channel
    hs = Handshake(channel_handle, link)
    handle = peer.new_handle("hs")
    peer.handshakes[handle] = hs
    hs.task = asyncio.create_task(_complete(hs))
    return handle, hs


async def _complete(hs: Handshake) -> None:
    # The failure is kept for handshake_status/handshake_wait rather than raised into the event loop.
    try:
        await hs.link.complete()
    except Exception as exc:
        hs.error = exc


def _outcome(hs: Handshake) -> Response:
    out: Response = {"state": hs.state.value, "channel": hs.channel_handle, "profile": _profile_name(hs.link)}
    if hs.state is HandshakeState.ESTABLISHED:
        code = hs.link.channel.check_code
        assert hs.link.peer_public_key is not None
        out.update(
            check_code=code.digits,
            check_bytes_hex=code.raw.hex(),
            peer_public_b64=b64encode(hs.link.peer_public_key),
        )
    elif hs.error is not None:
        out.update(error=type(hs.error).__name__, message=describe(hs.error))
    return out


async def op_handshake_status(peer: Peer, req: Request) -> Response:
    """Where a handshake stands, without waiting (a failed one is reported in ``error``/``message``)."""
    return _outcome(peer.handshake(req))


async def op_handshake_wait(peer: Peer, req: Request) -> Response:
    """Wait up to ``timeout_ms`` for the handshake; fails with the handshake's own error if it failed."""
    hs = peer.handshake(req)
    timeout = _positive_int(req, "timeout_ms", DEFAULT_WAIT_MS) / 1000
    assert hs.task is not None
    try:
        await asyncio.wait_for(asyncio.shield(hs.task), timeout)
    except TimeoutError:
        raise HandshakeTimeout(f"handshake not finished after {timeout:g} s") from None
    if hs.error is not None:
        raise hs.error
    return _outcome(hs)


def _established(hs: Handshake) -> None:
    if hs.state is HandshakeState.FAILED:
        raise HandshakeFailed("the handshake failed; see handshake_status")
    if hs.state is HandshakeState.RUNNING:
        raise HandshakePending("the handshake is still running; call handshake_wait first")


async def op_handshake_send(peer: Peer, req: Request) -> Response:
    """Encrypt ``plaintext`` on an established handshake's channel and send it over its rendezvous."""
    hs = peer.handshake(req)
    _established(hs)
    await hs.link.send(plaintext(req))
    return {}


async def op_handshake_receive(peer: Peer, req: Request) -> Response:
    """Wait up to ``timeout_ms`` for the peer's next message on the rendezvous and decrypt it."""
    hs = peer.handshake(req)
    _established(hs)
    timeout = _positive_int(req, "timeout_ms", DEFAULT_WAIT_MS) / 1000
    return plaintext_fields(await hs.link.receive(timeout=timeout))


async def op_handshake_close(peer: Peer, req: Request) -> Response:
    """Forget a handshake and its channel; with ``delete`` (default true) also DELETE the session."""
    hs = peer.handshake(req)
    delete = req.get("delete", True)
    if not isinstance(delete, bool):
        raise InvalidFieldValue("field 'delete' must be true or false")
    del peer.handshakes[req["handshake"]]
    peer.channels.pop(hs.channel_handle, None)
    if hs.task is not None and not hs.task.done():
        hs.task.cancel()
    await hs.link.aclose(delete=delete)
    return {}
