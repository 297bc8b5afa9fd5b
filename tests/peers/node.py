"""Real Node.js peers: matrix-js-sdk 43 (Element Web's rendezvous code) and matrix-sdk-crypto-wasm 18.9.0.

The packages are pinned in ``tests/peers/node/package.json`` + ``package-lock.json`` and installed with
``npm ci`` on first use. Each peer is a JSON-lines driver process (``*_driver.mjs``): one command per stdin
line, one answer per stdout line, matched by ``id`` so that several commands can be outstanding at once
(a device waiting for its peer to connect must not block the test from driving the peer).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pytest

from tests.peers._cache import cache_dir, file_lock, progress, uncaptured

NODE_DIR = Path(__file__).with_suffix("")  # tests/peers/node/, next to this module
LOCKFILE = NODE_DIR / "package-lock.json"
STAMP = NODE_DIR / "node_modules" / ".qrlink-installed"
DRIVERS = {"wasm": "wasm_driver.mjs", "jssdk": "jssdk_driver.mjs", "browser": "browser_driver.mjs"}
DriverKind = Literal["wasm", "jssdk", "browser"]


class NodePeerError(RuntimeError):
    """Node.js or the pinned npm packages are not available."""


class NodeDriverError(RuntimeError):
    """A driver command failed (``error`` is the JavaScript error name) or the driver process died."""

    def __init__(self, message: str, *, error: str = "DriverError", reply: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.reply = reply or {}


class NodeDriverTimeout(NodeDriverError):
    """A driver command did not answer in time."""


def _lock_digest() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodePeerError(
            "the Node peers need `node` (>= 20) and `npm` on PATH; install Node.js, then rerun the tests"
        )
    return node, npm


def ensure_node_packages() -> Path:
    """Run ``npm ci`` in ``tests/peers/node`` unless ``node_modules`` already matches the lockfile.

    The stamp file records the lockfile's SHA-256, so a changed lockfile (not just a newer mtime) reinstalls.
    Returns the folder holding the driver scripts.
    """
    _, npm = _node_tools()
    digest = _lock_digest()
    if STAMP.is_file() and STAMP.read_text().strip() == digest:
        return NODE_DIR
    with file_lock(cache_dir() / "node-peers.lock"):
        if STAMP.is_file() and STAMP.read_text().strip() == digest:
            return NODE_DIR
        started = time.monotonic()
        progress(f"npm ci in {NODE_DIR} (matrix-js-sdk, matrix-sdk-crypto-wasm, playwright-core; first run only)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise NodePeerError(f"npm ci failed with {result.returncode} in {NODE_DIR}:\n{output}")
        STAMP.write_text(digest)
        progress(f"npm ci done in {time.monotonic() - started:.0f}s")
    return NODE_DIR


class NodeDriver:
    """One JSON-lines driver process (``kind`` "wasm" or "jssdk").

    :meth:`call` sends a command and waits for its answer, raising :class:`NodeDriverError` when the command
    failed; :meth:`submit` returns a future instead, for commands that wait on the other device.
    """

    def __init__(self, kind: DriverKind, *, start_timeout: float = 30.0, default_timeout: float = 30.0) -> None:
        node, _ = _node_tools()
        ensure_node_packages()
        self.kind = kind
        self.default_timeout = default_timeout
        self._ids = itertools.count(1)
        self._pending: dict[Any, concurrent.futures.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._exited = False  # set by the reader under _lock once stdout closes; no command may be added after
        self._stray: list[str] = []
        # stderr goes to a file, not a pipe: js-sdk logs every request and a full pipe would block the driver.
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix=f"qrlink-{kind}-driver-")
        ready: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._pending["ready"] = ready
        self.process = subprocess.Popen(
            [node, DRIVERS[kind]],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self._reader = threading.Thread(target=self._read, name=f"{kind}-driver-reader", daemon=True)
        self._reader.start()
        try:
            self._wait(ready, start_timeout, "start")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"NodeDriver({self.kind!r}, pid={self.process.pid})"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                reply = json.loads(line)
                future = self._pending.pop(reply.get("id"), None) if isinstance(reply, dict) else None
            except json.JSONDecodeError:
                future = None
            if future is None:
                self._stray.append(line)
            else:
                future.set_result(reply)
        # stdout closed: the process is gone; fail whoever still waits, with its stderr for context.
        with self._lock:
            self._exited = True
            pending, self._pending = self._pending, {}
        code = self.process.wait()
        for future in pending.values():
            if not future.done():
                future.set_exception(NodeDriverError(f"{self.kind} driver exited with {code}\n{self.stderr_tail()}"))

    def submit(self, op: str, **fields: Any) -> concurrent.futures.Future[dict[str, Any]]:
        """Send a command without waiting; the future resolves to the raw reply (``ok`` true or false)."""
        command_id = next(self._ids)
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        future.op = op  # type: ignore[attr-defined]  # named in timeout messages
        with self._lock:
            if self._exited:
                raise NodeDriverError(f"{self.kind} driver is not running\n{self.stderr_tail()}")
            self._pending[command_id] = future
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps({"id": command_id, "op": op, **fields}) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            raise NodeDriverError(f"{self.kind} driver is gone\n{self.stderr_tail()}") from None
        return future

    def wait(self, future: concurrent.futures.Future[dict[str, Any]], timeout: float | None = None) -> dict[str, Any]:
        """Wait for a submitted command and return its result fields (without ``id``/``ok``).

        Raises :class:`NodeDriverError` if the command failed or the driver died, and
        :class:`NodeDriverTimeout` if no answer came within ``timeout`` seconds (default ``default_timeout``).
        """
        reply = self._wait(future, self.default_timeout if timeout is None else timeout, getattr(future, "op", "?"))
        if not reply.get("ok"):
            raise NodeDriverError(
                f"{self.kind} op failed: {reply.get('error')}: {reply.get('message')}\n"
                f"{reply.get('stack') or ''}\n{self.stderr_tail(1500)}",
                error=str(reply.get("error")),
                reply=reply,
            )
        return {key: value for key, value in reply.items() if key not in ("id", "ok")}

    def _wait(self, future: concurrent.futures.Future[dict[str, Any]], timeout: float, op: str) -> dict[str, Any]:
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise NodeDriverTimeout(
                f"{self.kind} driver: no answer to {op!r} within {timeout}s\n{self.stderr_tail()}"
            ) from None

    def call(self, op: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Run one command and return its result fields; raise :class:`NodeDriverError` if it failed."""
        return self.wait(self.submit(op, **fields), timeout)

    def stderr_tail(self, chars: int = 4000) -> str:
        """The end of the driver's stderr (library logs, stack traces)."""
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            # pread leaves the file offset alone: node shares it through the inherited descriptor.
            text = os.pread(fd, chars, max(0, size - chars)).decode(errors="replace")
        except ValueError:  # already closed
            return "(stderr closed)"
        stray = "".join(f"\n(unmatched stdout) {line}" for line in self._stray[-10:])
        return f"--- {self.kind} driver stderr ---\n{text}{stray}"

    def close(self) -> None:
        """Close stdin (the driver exits), then terminate or kill it if it lingers."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> NodeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NodeDriverFactory = Callable[[DriverKind], NodeDriver]


@pytest.fixture(scope="session")
def node_packages(pytestconfig: pytest.Config) -> Path:
    """Installs the pinned npm packages once per session (``npm ci``), returning their folder."""
    with uncaptured(pytestconfig):
        return ensure_node_packages()


@pytest.fixture
def node_driver(node_packages: Path) -> Iterator[NodeDriverFactory]:
    """Factory: ``node_driver("wasm")`` or ``node_driver("jssdk")`` starts a driver; all close afterwards."""
    started: list[NodeDriver] = []

    def start(kind: DriverKind) -> NodeDriver:
        driver = NodeDriver(kind)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.close()


@pytest.fixture(scope="module")
def wasm(node_packages: Path) -> Iterator[NodeDriver]:
    """A matrix-sdk-crypto-wasm driver shared by a test module.

    Its objects live behind per-call handles, so tests sharing it cannot see each other's state; sharing
    saves a process start per test. Tests about the driver process itself use their own (``node_driver``).
    """
    with NodeDriver("wasm") as driver:
        yield driver
