"""One established secure channel over one rendezvous session, as the login drivers use it.

Messages alternate (ping-pong), but a message that ends the login may be sent out of turn; :class:`Link` makes
sure such a message still reaches the peer, opens every payload exactly once and in order, and never seals two
ciphertexts with one nonce or sequence number.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .channel import ChannelError, DecryptionError, HpkeProfile, SecureChannel
from .errors import QrLinkError
from .flow import DeclinedMessage, FailureMessage, MessageError, parse_message
from .transport import ConcurrentWrite, RendezvousTransport

__all__ = ["Link"]

# PUTs of one message that ends the login. Under ping-pong the peer writes at most one message of its own turn
# and then one that ends the login without reading ours, so a third conflict cannot come from a working peer.
_ENDING_SEND_ATTEMPTS = 3


class Link:
    """One established secure channel over one rendezvous transport.

    The transport serialises its calls and a ``receive`` holds it for the whole wait, so a send first cancels
    the pending receive (cancellation is safe: a payload is either delivered or left for the next receive).

    Messages normally alternate (ping-pong), but a message that ends the login (``m.login.failure``,
    ``m.login.declined``) may be sent out of turn, while the peer is writing its own next message. Both
    writes are made against the same revision and the rendezvous takes only one (the other gets 412/409);
    :meth:`send` makes sure the ending message still reaches the peer, and that a message of our turn that
    loses to the peer's ending message leaves that message to be read. No nonce or sequence number is ever
    used for two different ciphertexts, and each payload is opened exactly once, in order.
    """

    def __init__(
        self, transport: RendezvousTransport, channel: SecureChannel, profile: HpkeProfile | None = None
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.profile = profile
        self._receiving: asyncio.Task[bytes] | None = None
        # Outcomes of receives that finished just as a send cancelled them, or of catching up before or
        # after a write that met the peer's: a message, or the error to raise.
        self._inbox: deque[bytes | BaseException] = deque()

    def next_message(self) -> asyncio.Task[bytes]:
        """The task that yields the peer's next decrypted message (the same task until it is taken)."""
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(self._receive())
        return self._receiving

    def taken(self) -> None:
        """The caller consumed the finished :meth:`next_message` task."""
        self._receiving = None

    async def _receive(self) -> bytes:
        if self._inbox:
            outcome = self._inbox.popleft()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        tokens = self._open_tokens()
        message = await self.transport.receive()
        return self._open(message, *tokens)

    def _open_tokens(self) -> tuple[str | None, str | None]:
        """Gen-2: the token the peer's next message is sealed with, and the one it may be sealed with instead.

        The peer seals with the token of the last revision it knew, which is the last one we know before its
        write: our own last write under ping-pong, or its previous message when it sends twice in a row (a
        failure right after LoginOk, before our user typed the check code). When our last write crossed the
        peer's ending message, the peer had not seen our write and sealed with the token our write replaced;
        that second candidate is accepted only for a message that ends the login (:meth:`_open`).
        """
        t = self.transport
        token = t.sequence_token
        crossed = t.replaced_sequence_token if token is not None and token == t.own_sequence_token else None
        return token, crossed

    def _open(self, message: str, token: str | None, crossed: str | None) -> bytes:
        try:
            return self.channel.decrypt(message, sequence_token=token)
        except DecryptionError:
            if crossed is None:
                raise
        # A failed open leaves the receive sequence where it was, so the same message can be tried again.
        # Binding to the older token tells only that the sender had not read our last write; that is what a
        # message ending the login sent out of turn looks like, and ending the login is all it can do, so
        # nothing else is accepted this way.
        plaintext = self.channel.decrypt(message, sequence_token=crossed)
        if not _ends_login(plaintext):
            raise DecryptionError("a message bound to an earlier sequence token does not end the login")
        return plaintext

    async def _catch_up(self) -> bytes | BaseException | None:
        """Read and open the peer's payload that this side has not read yet, if there is one; its outcome is
        queued for :meth:`next_message` and returned. Brings the channel's counters and (Gen-2) the token the
        next write is made against up to date."""
        tokens = self._open_tokens()
        message = await self.transport.receive_pending()
        if message is None:
            return None
        outcome: bytes | BaseException
        try:
            outcome = self._open(message, *tokens)
        except ChannelError as error:
            outcome = error
        self._inbox.append(outcome)
        return outcome

    async def send(self, plaintext: bytes, *, ends_login: bool = False) -> None:
        """Seal and write one message; ``ends_login`` for a failure or a decline (see the class docstring).

        A message of our turn that meets a concurrent write lost to the peer's out-of-turn message: that
        message is queued for :meth:`next_message` and ours is dropped, since the peer has ended the login.
        Raises :class:`ConcurrentWrite` when what crossed it does not end the login.
        """
        await self.stop_receiving()
        if ends_login:
            await self._send_ending(plaintext)
            return
        t = self.transport
        try:
            await t.send(self.channel.encrypt(plaintext, sequence_token=t.sequence_token))
        except ConcurrentWrite:
            crossed = await self._catch_up()
            if not (isinstance(crossed, bytes) and _ends_login(crossed)):
                raise

    async def _send_ending(self, plaintext: bytes) -> None:
        """Write a message that ends the login, whether or not it is our turn.

        First the peer's unread payload, if any, is read and opened (it is discarded with the login), so the
        message is sealed against the current revision and at the sequence the peer expects. If the peer
        still writes in the moment before our PUT, the same ciphertext is PUT again against the new revision
        once the peer's payload is opened: it was never delivered, so nothing is sealed twice, and the peer
        opens it at the sequence it expects (Gen-2: with the token its own write replaced, :meth:`_open`).
        Nothing more is sent once the peer's payload itself ends the login: nobody reads ours any more.
        """
        t = self.transport
        await self._catch_up()
        sealed = self.channel.encrypt(plaintext, sequence_token=t.sequence_token)
        for attempt in range(1, _ENDING_SEND_ATTEMPTS + 1):
            try:
                await t.send(sealed)
                return
            except ConcurrentWrite:
                if attempt == _ENDING_SEND_ATTEMPTS:
                    raise
                crossed = await self._catch_up()
                if isinstance(crossed, bytes) and _ends_login(crossed):
                    return

    async def stop_receiving(self) -> None:
        task, self._receiving = self._receiving, None
        if task is None:
            return
        task.cancel()
        # Not ``await task``: a CancelledError from it could be this task's own cancellation (the caller's
        # deadline), which must not be taken for the receive's and swallowed. ``wait`` raises only the latter.
        await asyncio.wait({task})
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._inbox.append(task.result())
        elif isinstance(error, QrLinkError):
            # A receive that failed just before the cancel: the next receive raises its error.
            self._inbox.append(error)
        else:
            raise error

    async def aclose(self) -> None:
        await self.stop_receiving()
        # The session is left to expire rather than deleted: the peer may still have to read our last message.
        await self.transport.aclose()


def _ends_login(plaintext: bytes) -> bool:
    """Whether a decrypted message is ``m.login.failure`` or ``m.login.declined``."""
    try:
        message = parse_message(plaintext)
    except MessageError:
        return False
    return isinstance(message, FailureMessage | DeclinedMessage)
