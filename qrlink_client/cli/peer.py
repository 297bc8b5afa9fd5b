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
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from .. import __version__
from .._b64 import b64encode
from ..channel import EciesChannel, HpkeChannel, HpkeProfile, Role, SecureChannel
from ..errors import QrLinkError
from ..qr import Gen1Mode, Gen2Intent, Gen2Layout, Gen2QrCode, QrCode, QrPrefix, decode_qr
from ..qr.fields import qr_from_fields, qr_to_fields
from ..request_fields import InvalidFieldValue, MissingField, Request, Response
from ..request_fields import b64_field as _b64
from ..request_fields import choice_field as _choice
from ..request_fields import hex_field as _hex
from ..request_fields import int_field as _int
from ..request_fields import non_negative_int_field as _positive_int
from ..request_fields import optional_str_field as _opt_str
from ..request_fields import required_hex_field as _req_hex
from ..request_fields import required_str_field as _req_str
from .qr import implied_profile

if TYPE_CHECKING:
    import httpx

    from ..handshake import Handshake as Link

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

IMPLEMENTATION = "qrlink"
DEFAULT_WAIT_MS = 30_000
"""How long ``handshake_wait`` and ``handshake_receive`` wait when the request gives no ``timeout_ms``."""


# --- errors about the request itself ------------------------------------------------------------------------


class PeerError(QrLinkError):
    """Base class of the errors the peer reports about a request (as opposed to library errors).

    A missing or malformed field is reported as :class:`~qrlink_client.request_fields.MissingField` or
    :class:`~qrlink_client.request_fields.InvalidFieldValue`, which the QR field mapping shares.
    """


class BadJson(PeerError):
    """The line is not valid UTF-8 JSON."""


class BadRequest(PeerError):
    """The line is JSON but not an object, or its ``op`` is not a string."""


class UnknownOp(PeerError):
    """The ``op`` names no operation of this peer."""


class UnknownChannel(PeerError):
    """The ``channel`` handle names no open channel."""


class UnknownHandshake(PeerError):
    """The ``handshake`` handle names no running or finished handshake."""


class HandshakeTimeout(PeerError):
    """``handshake_wait`` gave up after ``timeout_ms``; the handshake itself goes on."""


class HandshakeFailed(PeerError):
    """The handshake failed earlier, so its channel cannot carry messages (``handshake_status`` says why)."""


class HandshakePending(PeerError):
    """The handshake is still running, so its channel cannot carry messages yet."""


def describe(exc: BaseException) -> str:
    """The message to report for ``exc``.

    Library errors promise messages free of secrets, and httpx errors only name URLs and statuses, so their
    text is passed on. Anything else is a bug whose text could hold any value, so only its class is named.
    """
    if isinstance(exc, QrLinkError):
        return str(exc) or type(exc).__name__
    # httpx is imported only once a handshake needs it, which keeps the codec/channel peer quick to start.
    httpx_module = sys.modules.get("httpx")
    if httpx_module is not None and isinstance(exc, httpx_module.HTTPError):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}"


# --- request values ----------------------------------------------------------------------------------------


def _plaintext(req: Request) -> bytes:
    """``plaintext`` (text, sent as UTF-8) or, for binary payloads, ``plaintext_hex``."""
    if req.get("plaintext_hex") is not None:
        return _req_hex(req, "plaintext_hex")
    return _req_str(req, "plaintext").encode("utf-8")


def _plaintext_fields(plaintext: bytes) -> Response:
    out: Response = {"plaintext_hex": plaintext.hex()}
    try:
        out["plaintext"] = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        out["plaintext"] = None
    return out


# --- handshakes over a rendezvous ---------------------------------------------------------------------------


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


# --- the peer -----------------------------------------------------------------------------------------------

SyncOp = Callable[["Peer", Request], Response]
AsyncOp = Callable[["Peer", Request], Awaitable[Response]]


class Peer:
    """The request dispatcher and its handle tables. :meth:`handle` answers one request and never raises."""

    def __init__(self, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.channels: dict[str, SecureChannel] = {}
        self.handshakes: dict[str, Handshake] = {}
        self._counter = itertools.count(1)
        self._http_client = http_client
        self._owns_client = http_client is None

    # -- dispatch --

    async def handle_line(self, line: str | bytes) -> Response:
        """Parse one JSON line and answer it (an error response for bad JSON)."""
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            request = json.loads(text)
        except UnicodeDecodeError:
            return _failure(BadJson("line is not valid UTF-8"), None)
        except json.JSONDecodeError as exc:
            return _failure(BadJson(f"line is not valid JSON: {exc.msg} at column {exc.colno}"), None)
        return await self.handle(request)

    async def handle(self, request: object) -> Response:
        """Answer one parsed request: ``{"ok": true, ...}`` or ``{"ok": false, "error", "message"}``."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict):
                raise BadRequest("a request must be a JSON object")
            op = request.get("op")
            if op is None:
                raise MissingField("field 'op' is required")
            if not isinstance(op, str):
                raise BadRequest("field 'op' must be a string")
            if op in SYNC_OPS:
                result = SYNC_OPS[op](self, request)
            elif op in ASYNC_OPS:
                result = await ASYNC_OPS[op](self, request)
            else:
                raise UnknownOp("no such op; 'hello' lists the ops")
        except Exception as exc:  # every failure becomes a response; the process keeps going
            return _failure(exc, request_id)
        response: Response = {"id": request_id} if request_id is not None else {}
        response["ok"] = True
        response.update(result)
        return response

    # -- handles --

    def new_handle(self, kind: str) -> str:
        """A fresh handle such as ``ch1`` or ``hs2``, unique within this peer."""
        return f"{kind}{next(self._counter)}"

    def channel(self, req: Request) -> SecureChannel:
        """The channel the request's ``channel`` field names."""
        handle = _req_str(req, "channel")
        try:
            return self.channels[handle]
        except KeyError:
            raise UnknownChannel("no open channel has that handle") from None

    def handshake(self, req: Request) -> Handshake:
        """The handshake the request's ``handshake`` field names."""
        handle = _req_str(req, "handshake")
        try:
            return self.handshakes[handle]
        except KeyError:
            raise UnknownHandshake("no handshake has that handle") from None

    def http_client(self) -> httpx.AsyncClient:
        """The HTTP client the transports share (created on first use)."""
        if self._http_client is None:
            import httpx

            self._http_client = httpx.AsyncClient(timeout=30.0)
        return self._http_client

    async def aclose(self) -> None:
        """Stop running handshakes and close the HTTP client this peer created."""
        for hs in self.handshakes.values():
            if hs.task is not None and not hs.task.done():
                hs.task.cancel()
        tasks = [hs.task for hs in self.handshakes.values() if hs.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for hs in self.handshakes.values():
            await hs.link.aclose()
        self.handshakes.clear()
        self.channels.clear()
        if self._owns_client and self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None


def _failure(exc: BaseException, request_id: object) -> Response:
    response: Response = {"id": request_id} if request_id is not None else {}
    response.update(ok=False, error=type(exc).__name__, message=describe(exc))
    return response


# --- codec and channel ops ----------------------------------------------------------------------------------


def op_hello(peer: Peer, req: Request) -> Response:
    """Name, version and capabilities of this implementation."""
    return {
        "implementation": IMPLEMENTATION,
        "version": __version__,
        "ops": sorted([*SYNC_OPS, *ASYNC_OPS]),
        "generations": [1, 2],
        "profiles": sorted(p.value for p in HpkeProfile),
    }


def _qr_fields(code: QrCode) -> Response:
    """A code's fields as ``qr_decode`` answers them: Gen-2 adds the ``profile`` its layout implies."""
    fields = qr_to_fields(code)
    if isinstance(code, Gen2QrCode):
        fields["profile"] = implied_profile(code)
    return fields


def op_qr_decode(peer: Peer, req: Request) -> Response:
    """Decode QR payload bytes; Gen-2 also says which channel profile the layout implies."""
    return _qr_fields(decode_qr(_req_hex(req, "hex")))


def op_qr_encode(peer: Peer, req: Request) -> Response:
    """Encode QR fields; a Gen-2 ``profile`` picks the layout (``element-x``: Element X's; else the text's)."""
    code = qr_from_fields(req)
    if isinstance(code, Gen2QrCode):
        profile = _choice(req, "profile", HpkeProfile, default=HpkeProfile.MSC)
        code = dataclasses.replace(code, layout=Gen2Layout(profile.layout))
    elif req.get("profile") is not None:
        raise InvalidFieldValue("field 'profile' applies to Gen-2 codes only")
    return {"hex": code.to_bytes().hex()}


def op_channel_new(peer: Peer, req: Request) -> Response:
    """Create a secure channel in one role; a fixed ``secret_hex`` makes it deterministic."""
    generation = _int(req, "generation", (1, 2))
    role = _choice(req, "role", Role)
    secret = _hex(req, "secret_hex", required=False)
    channel = _new_channel(req, generation, role, secret)
    handle = peer.new_handle("ch")
    peer.channels[handle] = channel
    return {"channel": handle, "public_key_b64": b64encode(channel.public_key)}


def _new_channel(req: Request, generation: int, role: Role, secret: bytes | None) -> SecureChannel:
    profile = _profile(req, generation)
    if profile is None:
        if role is Role.GENERATOR:
            return EciesChannel.generator(secret)
        return EciesChannel.scanner(secret)
    base_url = _req_str(req, "base_url")
    rendezvous_id = _req_str(req, "rendezvous_id")
    if role is Role.GENERATOR:
        return HpkeChannel.generator(base_url, rendezvous_id, secret, profile=profile)
    return HpkeChannel.scanner(base_url, rendezvous_id, secret, profile=profile)


def _profile(req: Request, generation: int, default: HpkeProfile | None = HpkeProfile.MSC) -> HpkeProfile | None:
    """The request's HPKE ``profile`` (a name or an alias), which a Gen-1 request must not give."""
    if generation == 1:
        if req.get("profile") is not None:
            raise InvalidFieldValue("field 'profile' applies to Gen-2 channels only")
        return None
    if req.get("profile") is None:
        return default
    return _choice(req, "profile", HpkeProfile)


def op_channel_close(peer: Peer, req: Request) -> Response:
    """Forget a channel."""
    peer.channel(req)
    del peer.channels[req["channel"]]
    return {}


def op_initiate(peer: Peer, req: Request) -> Response:
    """S: the LoginInitiateMessage to G's public key."""
    channel = peer.channel(req)
    peer_public = _b64(req, "peer_public_b64")
    return {"message": channel.initiate(peer_public, sequence_token=_opt_str(req, "token"))}


def op_accept_initiate(peer: Peer, req: Request) -> Response:
    """G: check S's LoginInitiateMessage; returns S's public key."""
    channel = peer.channel(req)
    message = _req_str(req, "message")
    peer_public = channel.accept_initiate(message, sequence_token=_opt_str(req, "token"))
    return {"peer_public_b64": b64encode(peer_public)}


def op_ok_message(peer: Peer, req: Request) -> Response:
    """G: the LoginOkMessage; ``response_nonce_hex`` fixes the Gen-2 response nonce (for vectors)."""
    channel = peer.channel(req)
    nonce = _hex(req, "response_nonce_hex", required=False)
    return {"message": channel.ok_message(sequence_token=_opt_str(req, "token"), response_nonce=nonce)}


def op_accept_ok(peer: Peer, req: Request) -> Response:
    """S: check G's LoginOkMessage; the channel is then established."""
    channel = peer.channel(req)
    channel.accept_ok(_req_str(req, "message"), sequence_token=_opt_str(req, "token"))
    return {}


def op_check_code(peer: Peer, req: Request) -> Response:
    """The two-digit check code and the two bytes it comes from."""
    code = peer.channel(req).check_code
    return {"check_code": code.digits, "check_bytes_hex": code.raw.hex()}


def op_encrypt(peer: Peer, req: Request) -> Response:
    """Seal the next outgoing message."""
    channel = peer.channel(req)
    return {"message": channel.encrypt(_plaintext(req), sequence_token=_opt_str(req, "token"))}


def op_decrypt(peer: Peer, req: Request) -> Response:
    """Open the next incoming message."""
    channel = peer.channel(req)
    message = _req_str(req, "message")
    return _plaintext_fields(channel.decrypt(message, sequence_token=_opt_str(req, "token")))


# --- handshake ops ------------------------------------------------------------------------------------------


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
    from ..handshake import ShowGen1, ShowGen2, ShowQr, show_qr

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
        profile = _profile(req, generation, HpkeProfile.ELEMENT_X)
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
        **_qr_fields(decode_qr(qr_bytes)),
        "profile": _profile_name(link),
    }


async def _start_scanner(peer: Peer, req: Request, secret: bytes | None) -> Response:
    from ..handshake import scan_qr

    qr = decode_qr(_req_hex(req, "qr_hex"))
    # No profile given: the one the code's layout implies (UnknownGen2Profile for a legacy u16/u16 code).
    profile = _profile(req, qr.generation, None)
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
    await hs.link.send(_plaintext(req))
    return {}


async def op_handshake_receive(peer: Peer, req: Request) -> Response:
    """Wait up to ``timeout_ms`` for the peer's next message on the rendezvous and decrypt it."""
    hs = peer.handshake(req)
    _established(hs)
    timeout = _positive_int(req, "timeout_ms", DEFAULT_WAIT_MS) / 1000
    return _plaintext_fields(await hs.link.receive(timeout=timeout))


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


SYNC_OPS: dict[str, SyncOp] = {
    "hello": op_hello,
    "qr_decode": op_qr_decode,
    "qr_encode": op_qr_encode,
    "channel_new": op_channel_new,
    "channel_close": op_channel_close,
    "initiate": op_initiate,
    "accept_initiate": op_accept_initiate,
    "ok_message": op_ok_message,
    "accept_ok": op_accept_ok,
    "check_code": op_check_code,
    "encrypt": op_encrypt,
    "decrypt": op_decrypt,
}

ASYNC_OPS: dict[str, AsyncOp] = {
    "handshake_start": op_handshake_start,
    "handshake_status": op_handshake_status,
    "handshake_wait": op_handshake_wait,
    "handshake_send": op_handshake_send,
    "handshake_receive": op_handshake_receive,
    "handshake_close": op_handshake_close,
}


# --- the stdin/stdout driver --------------------------------------------------------------------------------


async def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    peer = Peer()
    try:
        while True:
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            response = await peer.handle_line(line)
            stdout.write(json.dumps(response, separators=(",", ":")).encode("ascii") + b"\n")
            stdout.flush()
    finally:
        await peer.aclose()


def serve(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """Run the peer on binary stdin/stdout until EOF; returns the exit status (0)."""
    asyncio.run(_serve(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer))
    return 0
