"""The engine under :func:`~qrlink_client.login.login_new_device` and :func:`~qrlink_client.login.grant_login`.

:class:`Driver` runs one :mod:`~qrlink_client.flow` machine to its end: the handshake (:mod:`.handshake`), then a
loop over the peer's messages (:class:`~qrlink_client.link.Link`), the current work item and the machine's
deadline, carrying out every action the machine returns. The app's callbacks are checked here, so a callback of
the wrong kind fails at once (:class:`CallbackError`) rather than leaving the login waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from .channel import ChannelError, HpkeProfile, Role
from .errors import QrLinkError
from .flow import (
    Action,
    DeclinedMessage,
    Done,
    EstablishingSecureChannel,
    Failed,
    FailureMessage,
    LoginFailed,
    LoginMachine,
    Progress,
    SendMessage,
)
from .handshake import ShowQr, scan_qr, show_qr
from .link import Link
from .qr import QrCode
from .transport import RendezvousError, RendezvousTransport, TransportOptions

__all__ = [
    "CallbackError",
    "CheckCodePrompt",
    "Driver",
    "HomeserverResolver",
    "ProgressCallback",
    "QrCodeReady",
    "VerificationUriOpener",
    "call_async",
    "check_progress_callback",
]

ProgressCallback = Callable[[Progress], None]
"""Receives every progress step (:class:`QrCodeReady`, the flow's :class:`~qrlink_client.flow.Progress`
subclasses, ending with :class:`~qrlink_client.flow.Done`). Called synchronously; it must not block."""
CheckCodePrompt = Callable[[], Awaitable[str]]
"""Asks the user of the device that showed the QR for the two digits the other device displays."""
VerificationUriOpener = Callable[[str], Awaitable[bool]]
"""Opens the verification URI for the user (a browser, a web view); ``False`` when it cannot be opened."""
HomeserverResolver = Callable[[str], Awaitable[str]]
"""Turns a server name into a client-server API base URL."""


class CallbackError(QrLinkError, TypeError):
    """A callback passed to :func:`login_new_device` or :func:`grant_login` is of the wrong kind.

    ``on_progress`` is called synchronously and must not be ``async``; ``check_code_prompt`` and
    ``open_verification_uri`` must return an awaitable whose result is a ``str`` / ``bool``, not a coroutine
    that nobody awaits (what an ``async`` function run through :func:`asyncio.to_thread` returns). Raised as
    soon as the callback is seen or called, after telling the other device that the login is cancelled.
    """


def check_progress_callback(on_progress: ProgressCallback) -> None:
    if inspect.iscoroutinefunction(on_progress) or inspect.iscoroutinefunction(
        getattr(on_progress, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise CallbackError(
            "on_progress is called synchronously and must return quickly, but it is an async function, whose "
            "body would never run: pass a plain function (it may hand work to a task or a queue's put_nowait)"
        )


async def call_async(callback: Callable[..., Any], name: str, expected: type, *args: Any) -> Any:
    """Call an async callback and check what it gives back (see :class:`CallbackError`)."""
    pending = callback(*args)
    if not inspect.isawaitable(pending):
        raise CallbackError(
            f"{name} must be an async function (or return an awaitable), but it returned "
            f"{type(pending).__name__}: wrap a blocking function as `async def f(...): return await "
            "asyncio.to_thread(blocking, ...)`"
        )
    result = await pending
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it so no "was never awaited" warning follows
        raise CallbackError(
            f"{name} returned an un-awaited coroutine instead of a {expected.__name__}: await it inside the "
            "callback (an async function run through asyncio.to_thread returns its coroutine unrun)"
        )
    if not isinstance(result, expected):
        raise CallbackError(f"{name} must return a {expected.__name__}, not {type(result).__name__}")
    return result


@dataclass(frozen=True)
class QrCodeReady(Progress):
    """The device showing the QR code has a rendezvous session: render :attr:`data` (``qr.to_bytes()``)."""

    qr: QrCode = field(repr=False)  # holds the session address, which lets anyone join

    @property
    def data(self) -> bytes:
        """The bytes to encode in the QR code."""
        return self.qr.to_bytes()


_Work = Callable[[Any], Coroutine[Any, Any, Callable[[], list[Action]]]]


class Driver:
    """Runs one machine to its end: handshake, then a loop over the peer's messages, the current work item
    and the machine's deadline."""

    def __init__(self, machine: LoginMachine, on_progress: ProgressCallback, prompt: CheckCodePrompt | None):
        self.machine = machine
        self.on_progress = on_progress
        self.prompt = prompt
        self.handlers: dict[type[Action], _Work] = {}
        self._work: asyncio.Task[Callable[[], list[Action]]] | None = None
        self._link: Link | None = None
        self._done: Done | None = None

    async def run(
        self,
        http: httpx.AsyncClient,
        show: ShowQr | None,
        scanned: QrCode | None,
        existing: tuple[str | None, str] | None,
        options: TransportOptions | None,
        profile: HpkeProfile | None = None,
    ) -> Done:
        machine = self.machine
        try:
            await self._apply(machine.start(now=time.monotonic()))
            try:
                link = await asyncio.wait_for(
                    self._handshake(http, show, scanned, existing, options, profile), self._time_left()
                )
            except TimeoutError as error:
                if not isinstance(error, RendezvousError):
                    # The machine's deadline passed during the handshake: a FlowTimeout naming the wait.
                    # (asyncio may wake a hair before the deadline: never report it as not yet passed)
                    await self._apply(machine.timeout(now=max(time.monotonic(), machine.deadline or 0.0)))
                await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                raise AssertionError("abort always fails the login") from error  # pragma: no cover
            except (RendezvousError, ChannelError, httpx.HTTPError) as error:
                await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                raise AssertionError("abort always fails the login") from error  # pragma: no cover
            self._link = link
            established = machine.channel_established(
                link.channel.check_code, now=time.monotonic(), profile=link.profile
            )
            await self._apply(established)
            await self._loop(link)
        except CallbackError as error:
            # A programming error: tell the peer the login is cancelled (if a channel exists), then raise it.
            if not machine.finished:
                with contextlib.suppress(LoginFailed, RendezvousError, ChannelError):
                    await self._apply(machine.abort(error, now=time.monotonic()))
            raise
        finally:
            await self._cleanup()
        assert self._done is not None
        return self._done

    def _time_left(self) -> float | None:
        deadline = self.machine.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    async def _handshake(
        self,
        http: httpx.AsyncClient,
        show: ShowQr | None,
        scanned: QrCode | None,
        existing: tuple[str | None, str] | None,
        options: TransportOptions | None,
        profile: HpkeProfile | None,
    ) -> Link:
        if scanned is not None:
            handshake = await scan_qr(http, scanned, profile=profile, options=options)
        else:
            assert show is not None
            server_name, access_token = existing if existing is not None else (None, None)
            # The signed-in device offers to sign another in; the device without an account asks to be.
            handshake = await show_qr(
                http,
                show,
                reciprocate=existing is not None,
                server_name=server_name,
                access_token=access_token,
                options=options,
            )
        try:
            if handshake.role is Role.GENERATOR:
                self._emit(QrCodeReady(handshake.qr), handshake.transport)
            await handshake.complete()
        except ChannelError:
            if handshake.role is not Role.GENERATOR:
                # LoginOk did not open. The device that showed the code learns it from the check code, which
                # this side never shows (its user cannot type one), so the session is left as it is.
                await handshake.aclose()
                raise
            # LoginInitiate did not open (a scanner on another Gen-2 profile, or a forged one): there is no
            # channel at all, nothing sealed can reach the scanner, and it would wait for a LoginOk that never
            # comes. The session is this side's own, so it is deleted: the scanner then stops at once
            # (SessionNotFound).
            with contextlib.suppress(QrLinkError, httpx.HTTPError):
                await handshake.aclose(delete=True)
            raise
        except BaseException:
            await handshake.aclose()
            raise
        return Link(handshake.transport, handshake.channel, handshake.profile)

    async def _loop(self, link: Link) -> None:
        machine = self.machine
        while not machine.finished:
            incoming = link.next_message()
            waiting: set[asyncio.Future[Any]] = {incoming}
            if self._work is not None:
                waiting.add(self._work)
            done, _ = await asyncio.wait(waiting, timeout=self._time_left(), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await self._apply(machine.timeout(now=time.monotonic()))
                continue
            if self._work is not None and self._work in done:
                work, self._work = self._work, None
                try:
                    feed = work.result()
                except CallbackError:
                    raise
                except (QrLinkError, httpx.HTTPError) as error:
                    await self._apply(machine.abort(error, now=time.monotonic()))
                    continue
                await self._apply(feed())
            if not machine.finished and incoming in done and incoming is link.next_message():
                link.taken()
                try:
                    plaintext = incoming.result()
                except (RendezvousError, ChannelError) as error:
                    # The channel or session is gone: nothing can reach the peer any more.
                    await self._apply(machine.abort(error, reason=None, now=time.monotonic()))
                    continue
                await self._apply(machine.message_received(plaintext, now=time.monotonic()))

    async def _apply(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order; :class:`Failed` raises its error."""
        for action in actions:
            if isinstance(action, SendMessage):
                assert self._link is not None  # the machines send nothing before the channel exists
                ends = isinstance(action.message, FailureMessage | DeclinedMessage)
                try:
                    await self._link.send(action.message.to_json(), ends_login=ends)
                except (RendezvousError, ChannelError) as error:
                    # After a message that ends the login the machine has failed already: abort does nothing
                    # and the next action raises the named error.
                    await self._apply(self.machine.abort(error, reason=None, now=time.monotonic()))
            elif isinstance(action, Failed):
                raise action.error
            elif isinstance(action, Progress):
                if isinstance(action, Done):
                    self._done = action
                self._emit(action, self._link.transport if self._link is not None else None)
                if isinstance(action, EstablishingSecureChannel) and action.must_enter_code:
                    self._start(self._ask_check_code())
            else:
                handler = self.handlers.get(type(action))
                if handler is None:  # pragma: no cover - every work action has a handler
                    raise TypeError(f"no handler for {type(action).__name__}")
                self._start(handler(action))

    def _emit(self, progress: Progress, transport: RendezvousTransport | None) -> None:
        """Report ``progress`` with the time left: the machine's deadline or the session's expiry, the earlier."""
        now = time.monotonic()
        deadline = self.machine.deadline
        expires_in = transport.expires_in if transport is not None and not self.machine.finished else None
        if expires_in is not None and (deadline is None or now + expires_in < deadline):
            deadline = now + expires_in
        if deadline is not None:
            progress = dataclasses.replace(progress, deadline=deadline, time_left_s=max(0.0, deadline - now))
        returned = self.on_progress(progress)
        if inspect.isawaitable(returned):
            if inspect.iscoroutine(returned):
                returned.close()
            raise CallbackError(
                "on_progress returned an awaitable; it is called synchronously and nothing awaits it: pass a "
                "plain function (it may hand work to a task or a queue's put_nowait)"
            )

    async def _ask_check_code(self) -> Callable[[], list[Action]]:
        assert self.prompt is not None  # checked by the public functions
        entered: str = await call_async(self.prompt, "check_code_prompt", str)
        return lambda: self.machine.check_code_entered(entered, now=time.monotonic())

    def _start(self, work: Coroutine[Any, Any, Callable[[], list[Action]]]) -> None:
        # The machines run one work item at a time: each waits for its outcome before asking for the next.
        assert self._work is None, "a work item is still running"
        self._work = asyncio.ensure_future(work)

    async def _cleanup(self) -> None:
        if self._work is not None:
            self._work.cancel()
            with contextlib.suppress(BaseException):
                await self._work
            self._work = None
        if self._link is not None:
            await self._link.aclose()
