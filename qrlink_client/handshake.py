"""The secure-channel handshake over a rendezvous session, written once for both generations.

The device that shows the QR code creates a session and a channel with :func:`show_qr` and gets the QR code
back at once, to show while it waits; the device that scans it joins the session the QR code names with
:func:`scan_qr`. Both get a :class:`Handshake` (transport, channel, QR code) and finish it with
:meth:`Handshake.complete`: the scanner sends LoginInitiate and checks LoginOk, the shower checks LoginInitiate
and answers LoginOk. Afterwards the channel carries the ``m.login.*`` messages, sealed with
:attr:`Handshake.seal_token` and opened with :attr:`Handshake.open_token`.

What differs between the generations (MSC4108: ECIES over an opaque session URL; MSC4388: HPKE bound to the
base URL, rendezvous id and sequence token; see the channel sections of docs/protocol.md) is decided once, by
:func:`open_rendezvous` from the show request or the scanned QR code; callers do not branch on it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Literal

import httpx

from .channel import EciesChannel, HpkeChannel, HpkeProfile, Role, SecureChannel
from .errors import QrLinkError
from .qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2Layout, Gen2QrCode, QrCode, QrPrefix
from .transport import Gen1Transport, Gen2Prefix, Gen2Transport, RendezvousTransport, TransportOptions

__all__ = [
    "Handshake",
    "Rendezvous",
    "ShowGen1",
    "ShowGen2",
    "ShowQr",
    "UnknownGen2Profile",
    "gen2_profile_of",
    "open_rendezvous",
    "scan_qr",
    "show_qr",
]


# --- what to show -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShowGen1:
    """Show an MSC4108 QR code for a session created at ``create_url`` (a rendezvous endpoint)."""

    create_url: str


@dataclass(frozen=True)
class ShowGen2:
    """Show an MSC4388 QR code for a session created on the homeserver at ``base_url`` (kept as given: it goes
    into the QR code and the channel's AAD).

    ``prefix`` is the rendezvous API's path; ``qr_prefix`` the bytes the QR payload opens with. ``profile`` is
    the channel profile (docs/protocol.md, "Profiles"), and the QR code's layout follows it, so a scanner can
    tell: ``element-x`` (the default: Element X's Gen-2 branch is the only Gen-2 client there is) writes
    Element X's layout (u16 base-URL length, root ``/`` trimmed), ``msc4388`` and ``vodozemac`` the text's
    (u8 lengths).
    """

    base_url: str
    prefix: Gen2Prefix = Gen2Prefix.UNSTABLE
    qr_prefix: QrPrefix = QrPrefix.IO_ELEMENT_MSC4388
    profile: HpkeProfile = HpkeProfile.ELEMENT_X

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", HpkeProfile(self.profile))


ShowQr = ShowGen1 | ShowGen2


class UnknownGen2Profile(QrLinkError):
    """A scanned Gen-2 QR code does not say which channel profile its device speaks, and none was given.

    The u16/u16 layout of older MSC4388 revisions is the one case: no client that writes it has a Gen-2
    channel to match, so rather than guess, the scanner is asked to name the profile.
    """


def gen2_profile_of(qr: Gen2QrCode) -> HpkeProfile:
    """The channel profile the layout of a scanned Gen-2 code implies (docs/protocol.md, "QR payloads").

    Element X's layout (u8 id, u16 base URL) → ``element-x``; the text's (u8, u8) → ``msc4388``. Raises
    :class:`UnknownGen2Profile` for the legacy u16/u16 layout.
    """
    profile = HpkeProfile.for_layout(qr.layout.value)
    if profile is None:
        raise UnknownGen2Profile(
            "this Gen-2 QR code uses the u16/u16 layout of older MSC4388 revisions, which implies no channel "
            "profile; name one (element-x, msc4388 or vodozemac)"
        )
    return profile


# --- one interface over the two transports ------------------------------------------------------------------


class Rendezvous(abc.ABC):
    """A session this device created or joined: its transport, and how the channel and the QR code name it."""

    generation: ClassVar[Literal[1, 2]]

    @property
    @abc.abstractmethod
    def transport(self) -> RendezvousTransport:
        """The session's transport; its ``sequence_token`` is the token a Gen-2 channel binds into its AAD
        (``None`` for Gen-1, which binds nothing)."""

    @property
    @abc.abstractmethod
    def profile(self) -> HpkeProfile | None:
        """The Gen-2 channel profile (``None`` for Gen-1)."""

    @abc.abstractmethod
    def channel(self, role: Role, secret_key: bytes | None = None) -> SecureChannel:
        """A fresh channel for this session; ``secret_key`` fixes the key pair (tests, vectors)."""

    @abc.abstractmethod
    def qr(self, public_key: bytes, *, reciprocate: bool, server_name: str | None = None) -> QrCode:
        """The QR code naming this session and ``public_key``.

        ``reciprocate``: shown by the signed-in device (Gen-1 mode 0x04, Gen-2 intent 0x01) rather than by the
        device to sign in. ``server_name`` goes into a Gen-1 code only, where reciprocate requires it.
        """


@dataclass(frozen=True)
class _Gen1Rendezvous(Rendezvous):
    _transport: Gen1Transport

    generation: ClassVar[Literal[1, 2]] = 1

    @property
    def transport(self) -> RendezvousTransport:
        return self._transport

    @property
    def profile(self) -> HpkeProfile | None:
        return None

    def channel(self, role: Role, secret_key: bytes | None = None) -> SecureChannel:
        return EciesChannel(role, secret_key)

    def qr(self, public_key: bytes, *, reciprocate: bool, server_name: str | None = None) -> QrCode:
        mode = Gen1Mode.RECIPROCATE if reciprocate else Gen1Mode.LOGIN
        return Gen1QrCode(public_key, mode, self._transport.url, server_name)


@dataclass(frozen=True)
class _Gen2Rendezvous(Rendezvous):
    _transport: Gen2Transport
    _profile: HpkeProfile
    qr_prefix: QrPrefix = QrPrefix.IO_ELEMENT_MSC4388

    generation: ClassVar[Literal[1, 2]] = 2

    @property
    def transport(self) -> RendezvousTransport:
        return self._transport

    @property
    def profile(self) -> HpkeProfile | None:
        return self._profile

    def channel(self, role: Role, secret_key: bytes | None = None) -> SecureChannel:
        # The AAD binds the base URL as the QR code carries it (element-x: its serialisation, which is the same
        # for the shower's URL and the trimmed one in the code) and the id only the server's answer told.
        t = self._transport
        return HpkeChannel(role, t.base_url, t.rendezvous_id, secret_key, self._profile)

    def qr(self, public_key: bytes, *, reciprocate: bool, server_name: str | None = None) -> QrCode:
        intent = Gen2Intent.RECIPROCATE if reciprocate else Gen2Intent.LOGIN
        t = self._transport
        layout = Gen2Layout(self._profile.layout)
        return Gen2QrCode(public_key, intent, t.rendezvous_id, t.base_url, self.qr_prefix, layout)


async def open_rendezvous(
    http: httpx.AsyncClient,
    where: ShowQr | QrCode,
    *,
    access_token: str | None = None,
    profile: HpkeProfile | None = None,
    options: TransportOptions | None = None,
) -> Rendezvous:
    """Create the session a show request asks for, or join the one a scanned QR code names.

    ``access_token`` authorises a Gen-2 create (a server may refuse anonymous ones); joining needs none.
    ``profile`` is the Gen-2 channel profile for a scanned code; by default the code's layout says it
    (:func:`gen2_profile_of`, which raises :class:`UnknownGen2Profile` before anything is sent). A show request
    carries its own (:attr:`ShowGen2.profile`). The HTTP client is borrowed. Raises the transports'
    :class:`~qrlink_client.transport.RendezvousError`\\ s.
    """
    if isinstance(where, ShowGen1):
        return _Gen1Rendezvous(await Gen1Transport.create(http, where.create_url, options=options))
    if isinstance(where, ShowGen2):
        created = await Gen2Transport.create(
            http, where.base_url, access_token=access_token, prefix=where.prefix, options=options
        )
        return _Gen2Rendezvous(created, where.profile, where.qr_prefix)
    if isinstance(where, Gen1QrCode):
        return _Gen1Rendezvous(await Gen1Transport.join(http, where.rendezvous_url, options=options))
    chosen = HpkeProfile(profile) if profile is not None else gen2_profile_of(where)
    joined = await Gen2Transport.join(http, where.base_url, where.rendezvous_id, options=options)
    return _Gen2Rendezvous(joined, chosen, where.prefix)


# --- the handshake ------------------------------------------------------------------------------------------


class Handshake:
    """One device's side of the handshake: a session, a channel and the QR code that names both.

    From :func:`show_qr` (the channel is the generator) or :func:`scan_qr` (the scanner); :meth:`complete`
    establishes the channel. The transport is this object's to close (:meth:`aclose`) once the caller is done
    with it, including after :meth:`complete` failed: the caller may still want to report on it.
    """

    def __init__(
        self, rendezvous: Rendezvous, channel: SecureChannel, qr: QrCode, *, response_nonce: bytes | None = None
    ) -> None:
        self._rendezvous = rendezvous
        self._channel = channel
        self._qr = qr
        self._response_nonce = response_nonce
        self._peer_public_key: bytes | None = None

    def __repr__(self) -> str:
        # The QR code holds the session address, which lets anyone join, so it stays out.
        return f"Handshake(generation={self.generation}, role={self.role.name}, established={self.established})"

    @property
    def transport(self) -> RendezvousTransport:
        """The session's transport."""
        return self._rendezvous.transport

    @property
    def channel(self) -> SecureChannel:
        """The secure channel; usable for messages once :meth:`complete` has returned."""
        return self._channel

    @property
    def qr(self) -> QrCode:
        """The QR code shown (generator) or scanned (scanner). Treat it as a secret until the session ends."""
        return self._qr

    @property
    def generation(self) -> Literal[1, 2]:
        """1 for MSC4108, 2 for MSC4388."""
        return self._rendezvous.generation

    @property
    def profile(self) -> HpkeProfile | None:
        """The Gen-2 channel profile in use (shown: the show request's; scanned: the one given, else the one
        the QR code's layout implies); ``None`` for Gen-1."""
        return self._rendezvous.profile

    @property
    def role(self) -> Role:
        """:attr:`Role.GENERATOR` for the device that showed the QR code, :attr:`Role.SCANNER` otherwise."""
        return self._channel.role

    @property
    def peer_public_key(self) -> bytes | None:
        """The other device's public key, once :meth:`complete` has returned."""
        return self._peer_public_key

    @property
    def established(self) -> bool:
        """Whether :meth:`complete` has returned."""
        return self._peer_public_key is not None

    @property
    def seal_token(self) -> str | None:
        """The token to seal the next message with: the one the next PUT carries (Gen-1: ``None``)."""
        return self.transport.sequence_token

    @property
    def open_token(self) -> str | None:
        """The token to open the peer's next message with; read it *before* receiving (Gen-1: ``None``).

        It is the server's current token as this side last saw it, the revision the peer wrote over: this
        side's own last write (or create) under ping-pong, the peer's previous message when the peer writes
        twice in a row. Element X's branch does the same (the AAD is built before each receive from the token
        it last saw), as does :mod:`qrlink_client.login`. Receiving moves the token on to the peer's write.
        """
        return self.transport.sequence_token

    async def complete(self) -> None:
        """Run this side's half: S sends LoginInitiate and checks LoginOk; G waits for LoginInitiate, checks it
        and sends LoginOk. Raises the transport's or the channel's error; the transport stays open."""
        transport, channel = self.transport, self._channel
        if channel.role is Role.SCANNER:
            generator_key = self._qr.public_key
            await transport.send(channel.initiate(generator_key, sequence_token=self.seal_token))
            token = self.open_token
            channel.accept_ok(await transport.receive(), sequence_token=token)
            self._peer_public_key = generator_key
            return
        token = self.open_token
        initiate = await transport.receive()
        scanner_key = channel.accept_initiate(initiate, sequence_token=token)
        ok = channel.ok_message(sequence_token=self.seal_token, response_nonce=self._response_nonce)
        await transport.send(ok)
        self._peer_public_key = scanner_key

    async def send(self, plaintext: bytes) -> None:
        """Seal ``plaintext`` with :attr:`seal_token` and write it; after :meth:`complete`."""
        await self.transport.send(self._channel.encrypt(plaintext, sequence_token=self.seal_token))

    async def receive(self, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - as the transport's
        """Wait for the peer's next message and open it with :attr:`open_token` as it was before the wait.

        Raises the transport's errors (:class:`~qrlink_client.transport.ReceiveTimeout` after ``timeout``
        seconds) or the channel's.
        """
        token = self.open_token
        message = await self.transport.receive(timeout=timeout)
        return self._channel.decrypt(message, sequence_token=token)

    async def aclose(self, *, delete: bool = False) -> None:
        """Close the transport; with ``delete``, DELETE the session first (the peer then sees it gone)."""
        try:
            if delete:
                await self.transport.delete()
        finally:
            await self.transport.aclose()


async def show_qr(
    http: httpx.AsyncClient,
    show: ShowQr,
    *,
    reciprocate: bool = False,
    server_name: str | None = None,
    access_token: str | None = None,
    secret_key: bytes | None = None,
    response_nonce: bytes | None = None,
    options: TransportOptions | None = None,
) -> Handshake:
    """Create a session and the generator's channel; the QR code is ready to show on return.

    ``reciprocate``: this is the signed-in device offering to sign another in (Gen-1 then needs
    ``server_name``). ``access_token`` authorises a Gen-2 create, whose channel profile and QR layout come from
    :attr:`ShowGen2.profile`. ``secret_key`` and ``response_nonce`` (Gen-2 LoginOk) fix what is otherwise random,
    for tests and vectors. If the channel or the QR code cannot be made, the new session is deleted before the
    error is raised.
    """
    rendezvous = await open_rendezvous(http, show, access_token=access_token, options=options)
    try:
        channel = rendezvous.channel(Role.GENERATOR, secret_key)
        qr = rendezvous.qr(channel.public_key, reciprocate=reciprocate, server_name=server_name)
        # A field too long for its length prefix fails here, while the session can still be deleted.
        qr.to_bytes()
    except BaseException:
        await _discard(rendezvous.transport)
        raise
    return Handshake(rendezvous, channel, qr, response_nonce=response_nonce)


async def scan_qr(
    http: httpx.AsyncClient,
    qr: QrCode,
    *,
    secret_key: bytes | None = None,
    profile: HpkeProfile | None = None,
    options: TransportOptions | None = None,
) -> Handshake:
    """Join the session a scanned QR code names and make the scanner's channel (Gen-2: after one GET).

    ``secret_key`` as for :func:`show_qr`. ``profile`` (Gen-2) overrides the channel profile the code's layout
    implies (:func:`gen2_profile_of`; :class:`UnknownGen2Profile` for a legacy u16/u16 code without one). If the
    channel cannot be made, the transport is closed before the error is raised (the session is the other
    device's, so it is not deleted).
    """
    rendezvous = await open_rendezvous(http, qr, profile=profile, options=options)
    try:
        channel = rendezvous.channel(Role.SCANNER, secret_key)
    except BaseException:
        await rendezvous.transport.aclose()
        raise
    return Handshake(rendezvous, channel, qr)


async def _discard(transport: RendezvousTransport) -> None:
    """Delete a session just created for a handshake that then failed, so nothing half-made is left behind."""
    try:
        await transport.delete()
    except (QrLinkError, httpx.HTTPError):
        pass  # it expires on its own; the caller hears about the error that made us discard it
    finally:
        await transport.aclose()
