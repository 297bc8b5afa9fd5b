"""Terminal I/O shared by ``qrlink login``, ``qrlink grant`` and ``qrlink demo``.

- :class:`Console`: progress lines on stderr, each prefixed with the device it speaks for.
- :class:`ProgressPrinter`: turns the login drivers' progress steps into those lines (and shows the QR code).
- :func:`stdin_line` / :func:`check_code_prompt`: answers typed on stdin while the login runs.
- :func:`write_private_file`: the session file and the pickle key, readable by their owner only.

Finding servers (the homeserver's rendezvous endpoint) is library logic: :mod:`qrlink_client.discovery`.

stdout is kept for machine-readable output (a QR payload on request, one JSON line at the end); everything
for the human goes to stderr.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TextIO

from .._b64 import b64encode
from ..errors import QrLinkError
from ..flow import (
    Done,
    EstablishingSecureChannel,
    ExistingDeviceResult,
    Progress,
    Starting,
    SyncingSecrets,
    WaitingForAuth,
    WaitingForToken,
)
from ..login import CheckCodePrompt, QrCodeReady
from .terminal import color_enabled, draw_qr

__all__ = [
    "Console",
    "InputClosed",
    "ProgressPrinter",
    "check_code_prompt",
    "qr_payload_line",
    "read_line_now",
    "stdin_line",
    "write_private_file",
]


class InputClosed(QrLinkError):
    """stdin ended before the answer that was asked for."""


class Console:
    """Writes lines for the human to ``stream`` (stderr), prefixed with ``label`` (``"[phone] "``).

    Several consoles may share one stream (the demo's two devices): a line written while another console's prompt
    waits for its answer starts on a fresh line instead of running on after the question.
    """

    #: Streams (by id) whose cursor sits after a prompt, not at the start of a line.
    _after_prompt: ClassVar[set[int]] = set()

    def __init__(self, label: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        """The stream written to (stderr unless another was given), looked up when used."""
        return self._stream or sys.stderr

    def _start_line(self) -> None:
        stream = self.stream
        if id(stream) in self._after_prompt:
            self._after_prompt.discard(id(stream))
            stream.write("\n")

    def line(self, text: str) -> None:
        """Write one line (several for a multi-line ``text``), each with the prefix."""
        self._start_line()
        prefix = f"{self.label} " if self.label else ""
        for part in text.splitlines() or [""]:
            self.stream.write(f"{prefix}{part}\n")
        self.stream.flush()

    def block(self, text: str) -> None:
        """Write ``text`` as is (a QR code drawn with block characters)."""
        self._start_line()
        self.stream.write(text)
        self.stream.flush()

    def prompt(self, text: str) -> None:
        """Write a question and leave the cursor after it."""
        self._start_line()
        prefix = f"{self.label} " if self.label else ""
        self.stream.write(f"{prefix}{text}")
        self.stream.flush()
        self._after_prompt.add(id(self.stream))

    def answered(self) -> None:
        """The prompt's answer has been read: a terminal echoed it with its line break, a pipe did not."""
        if id(self.stream) in self._after_prompt:
            self._after_prompt.discard(id(self.stream))
            if not sys.stdin.isatty():
                self.stream.write("\n")
                self.stream.flush()


class ProgressPrinter:
    """A :data:`~qrlink_client.login.ProgressCallback` that describes each step on a :class:`Console`.

    ``peer`` names the other device in the messages ("the other device", "the phone"). ``on_qr`` receives the
    QR payload when this device shows one (draw it, write a PNG, hand it to the scanner); ``show_qr`` also
    draws it on the console, sized for its terminal (:func:`~qrlink_client.cli.terminal.draw_qr`), black on
    white unless ``color`` is false (default: unless ``$NO_COLOR`` is set). When the code does not fit the
    window, a line says so and names ``image_option`` (``--qr-png``) if the command has one. Line formats are
    stable, because scripts read them: ``check code: NN`` and ``user code: XXXX-XXXX``.
    """

    def __init__(
        self,
        console: Console,
        *,
        peer: str = "the other device",
        show_qr: bool = True,
        on_qr: Callable[[bytes], None] | None = None,
        color: bool | None = None,
        image_option: str | None = None,
    ) -> None:
        self.console = console
        self.peer = peer
        self.show_qr = show_qr
        self.on_qr = on_qr
        self.color = color_enabled() if color is None else color
        self.image_option = image_option
        # Only the existing device is asked to approve; what it says later depends on it.
        self._existing = False

    def __call__(self, step: Progress) -> None:
        say = self.console.line
        if isinstance(step, Starting):
            say("starting")
        elif isinstance(step, QrCodeReady):
            data = step.data
            # The code comes last, so that a window just tall enough shows all of it.
            say(f"QR code ready ({len(data)} bytes): scan it with {self.peer}")
            if self.show_qr:
                drawn = draw_qr(data, self.console.stream, color=self.color, image_option=self.image_option)
                self.console.block(drawn.text)
                if drawn.advice:
                    say(drawn.advice)
            if self.on_qr is not None:
                self.on_qr(data)
        elif isinstance(step, EstablishingSecureChannel):
            if step.profile is not None:
                say(f"Gen-2 channel profile: {step.profile.value}")
            if step.check_code is not None:
                say(f"secure channel established; check code: {step.check_code.digits}")
                say(f"enter the check code on {self.peer}")
            else:
                say(f"secure channel established; {self.peer} shows a two-digit check code")
        elif isinstance(step, WaitingForToken):
            say(f"waiting for approval; user code: {step.user_code}")
            say("the verification page must show the same user code")
        elif isinstance(step, WaitingForAuth):
            # The URL itself is printed (or opened) by the verification-URI opener, once.
            self._existing = True
            say(f"{self.peer} asks to sign in to this account; approve it on the verification page")
        elif isinstance(step, SyncingSecrets):
            if self._existing:
                say(f"{self.peer} is signed in; sending it the encryption secrets")
            else:
                say("signed in; receiving the encryption secrets")
        elif isinstance(step, Done):
            if isinstance(step.result, ExistingDeviceResult):
                say(f"done: signed in device {step.result.device_id} and sent it the secrets")
            else:
                say(f"done: this device is {step.result.device_id}; secrets received")
        else:  # pragma: no cover - every progress class of the flow is listed above
            say(type(step).__name__)


# --- stdin ----------------------------------------------------------------------------------------------------


class _StdinLines:
    """Lines of stdin, read by one daemon thread and handed to whichever coroutine awaits :meth:`get`.

    The thread reads the raw file descriptor rather than ``sys.stdin``: a daemon thread blocked inside the
    buffered reader holds its lock, and the interpreter aborts at exit when it finds that lock taken. A
    blocked ``os.read`` holds nothing, so the process can end while a prompt is still waiting (Ctrl-C, or
    the other device failing).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(target=self._read, args=(fd,), name="qrlink-stdin", daemon=True).start()

    def _read(self, fd: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    self._deliver(pending.decode("utf-8", "replace"))
                self._deliver(None)
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._deliver(line.decode("utf-8", "replace").rstrip("\r"))

    def _deliver(self, line: str | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def get(self) -> str:
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # every later read sees the end too
            raise InputClosed("stdin ended before an answer was typed")
        return line


_stdin: _StdinLines | None = None


async def stdin_line() -> str:
    """The next line typed on stdin (without its line break); raises :class:`InputClosed` at its end.

    Cancelling the wait loses no input: an unclaimed line stays for the next call.
    """
    global _stdin
    loop = asyncio.get_running_loop()
    if _stdin is None or _stdin._loop is not loop:
        _stdin = _StdinLines(loop, sys.stdin.fileno())
    return await _stdin.get()


def read_line_now() -> str:
    """Read one line from stdin before any event loop runs, byte by byte, so that nothing after it is
    consumed; raises :class:`InputClosed` at the end of input."""
    fd = sys.stdin.fileno()
    data = bytearray()
    while True:
        byte = os.read(fd, 1)
        if not byte:
            if not data:
                raise InputClosed("stdin ended before an answer was typed")
            break
        if byte == b"\n":
            break
        data += byte
    return data.decode("utf-8", "replace").rstrip("\r")


_TWO_DIGITS = re.compile(r"\d{2}")


def check_code_prompt(console: Console, *, peer: str = "the other device") -> CheckCodePrompt:
    """A :data:`~qrlink_client.login.CheckCodePrompt` that asks on ``console`` and reads stdin.

    Anything but two digits is asked again: a typo is not a wrong code. Two wrong digits end the login
    (:class:`~qrlink_client.flow.CheckCodeMismatch`), which is the point of the check.
    """

    async def ask() -> str:
        while True:
            console.prompt(f"enter the check code shown on {peer}: ")
            answer = (await stdin_line()).strip()
            console.answered()
            if _TWO_DIGITS.fullmatch(answer):
                return answer
            console.line("the check code is two digits, e.g. 07")

    return ask


# --- files and output ---------------------------------------------------------------------------------------


def qr_payload_line(data: bytes) -> str:
    """The QR payload as one line of standard base64 (what ``--print-qr-base64`` writes on stdout)."""
    return b64encode(data)


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically: a reader sees the old file or
    the whole new one. ``exclusive`` refuses to replace an existing file (:class:`FileExistsError`)."""
    import tempfile

    path = path.expanduser()
    directory = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)  # created 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if path exists, unlike os.replace
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
