"""The handshake state machine both channels follow, as one table (docs/protocol.md, "Gen-1 channel"; "Gen-2 channel").

S: NEW --initiate--> AWAITING_OK --accept_ok--> ESTABLISHED
G: NEW --accept_initiate--> INITIATE_ACCEPTED --ok_message--> ESTABLISHED
A failed step leaves the state unchanged, so the caller decides whether to abort or wait for another message.
"""

from __future__ import annotations

import enum

from ._x25519 import KeyPair
from .base import ChannelStateError, Role

__all__ = ["ChannelState", "HandshakeChannel", "Operation", "transition"]


class ChannelState(enum.Enum):
    """Where a channel is in its handshake."""

    NEW = "new"
    AWAITING_OK = "awaiting_ok"
    INITIATE_ACCEPTED = "initiate_accepted"
    ESTABLISHED = "established"


class Operation(enum.Enum):
    """The channel operations that the state machine governs."""

    INITIATE = "initiate"
    ACCEPT_INITIATE = "accept_initiate"
    OK_MESSAGE = "ok_message"
    ACCEPT_OK = "accept_ok"
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"


_S, _G = Role.SCANNER, Role.GENERATOR
_TRANSITIONS: dict[tuple[Role, Operation, ChannelState], ChannelState] = {
    (_S, Operation.INITIATE, ChannelState.NEW): ChannelState.AWAITING_OK,
    (_S, Operation.ACCEPT_OK, ChannelState.AWAITING_OK): ChannelState.ESTABLISHED,
    (_S, Operation.ENCRYPT, ChannelState.ESTABLISHED): ChannelState.ESTABLISHED,
    (_S, Operation.DECRYPT, ChannelState.ESTABLISHED): ChannelState.ESTABLISHED,
    (_G, Operation.ACCEPT_INITIATE, ChannelState.NEW): ChannelState.INITIATE_ACCEPTED,
    (_G, Operation.OK_MESSAGE, ChannelState.INITIATE_ACCEPTED): ChannelState.ESTABLISHED,
    (_G, Operation.ENCRYPT, ChannelState.ESTABLISHED): ChannelState.ESTABLISHED,
    (_G, Operation.DECRYPT, ChannelState.ESTABLISHED): ChannelState.ESTABLISHED,
}

CHECK_CODE_STATES: dict[Role, frozenset[ChannelState]] = {
    _S: frozenset({ChannelState.ESTABLISHED}),
    _G: frozenset({ChannelState.INITIATE_ACCEPTED, ChannelState.ESTABLISHED}),
}
"""States in which each role may read the check code (S only after LoginOk, so a hijacker never learns it)."""


def transition(role: Role, operation: Operation, state: ChannelState) -> ChannelState:
    """Return the state after ``operation``, or raise :class:`ChannelStateError` if it is not allowed now."""
    try:
        return _TRANSITIONS[(role, operation, state)]
    except KeyError:
        raise ChannelStateError(
            f"{operation.value} is not allowed for role {role.name} in state {state.value}"
        ) from None


class HandshakeChannel:
    """What a channel of either generation holds before any cryptography: its role, its own X25519 key pair,
    the peer's public key once known, and where the handshake stands."""

    def __init__(self, role: Role, secret_key: bytes | None) -> None:
        self._role = role
        # G: the key in the QR code (Gs, Gp). S: its ephemeral key (Gen-2: the KEM ephemeral, so Sp is HPKE's enc).
        self._key_pair = KeyPair(secret_key)
        self._state = ChannelState.NEW
        self._peer_public_key: bytes | None = None

    @property
    def role(self) -> Role:
        """Generator (shows the QR code) or scanner."""
        return self._role

    @property
    def public_key(self) -> bytes:
        """Own X25519 public key: Gp for G (in the QR code), Sp for S (in Gen-2 also the HPKE ``enc``)."""
        return self._key_pair.public_key

    @property
    def peer_public_key(self) -> bytes | None:
        """The other side's public key once known."""
        return self._peer_public_key

    @property
    def state(self) -> ChannelState:
        """Where the handshake stands."""
        return self._state

    @property
    def established(self) -> bool:
        """Whether both handshake messages have been exchanged."""
        return self._state is ChannelState.ESTABLISHED
