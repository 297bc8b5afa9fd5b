"""The channel ops: a secure channel's steps (initiate, ok, check code, encrypt, decrypt), one request at a time,
on channels the peer keeps by handle. Synchronous and free of I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._b64 import b64encode
from ...channel import EciesChannel, HpkeChannel, Role, SecureChannel
from ...request_fields import Request, Response
from ...request_fields import b64_field as _b64
from ...request_fields import choice_field as _choice
from ...request_fields import hex_field as _hex
from ...request_fields import int_field as _int
from ...request_fields import optional_str_field as _opt_str
from ...request_fields import required_str_field as _req_str
from ._values import hpke_profile, plaintext, plaintext_fields

if TYPE_CHECKING:
    from .dispatch import Peer

__all__ = [
    "op_accept_initiate",
    "op_accept_ok",
    "op_channel_close",
    "op_channel_new",
    "op_check_code",
    "op_decrypt",
    "op_encrypt",
    "op_initiate",
    "op_ok_message",
]


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
    profile = hpke_profile(req, generation)
    if profile is None:
        if role is Role.GENERATOR:
            return EciesChannel.generator(secret)
        return EciesChannel.scanner(secret)
    base_url = _req_str(req, "base_url")
    rendezvous_id = _req_str(req, "rendezvous_id")
    if role is Role.GENERATOR:
        return HpkeChannel.generator(base_url, rendezvous_id, secret, profile=profile)
    return HpkeChannel.scanner(base_url, rendezvous_id, secret, profile=profile)


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
    return {"message": channel.encrypt(plaintext(req), sequence_token=_opt_str(req, "token"))}


def op_decrypt(peer: Peer, req: Request) -> Response:
    """Open the next incoming message."""
    channel = peer.channel(req)
    message = _req_str(req, "message")
    return plaintext_fields(channel.decrypt(message, sequence_token=_opt_str(req, "token")))
