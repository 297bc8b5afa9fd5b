"""Serve an ASGI app from a background thread: used for the OAuth server inside the stack and in tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import uvicorn

from devstack._process import StartupError

T = TypeVar("T")


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, ready to hand to :class:`ServerThread`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """An ASGI app on uvicorn in a background thread with its own event loop, on an already-bound socket.

    Its own thread and loop let both sync code (pytest fixtures) and async code (any event loop) use the
    server, and let the stack run coroutines on the server's loop, where all OAuth state lives.
    """

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self._sock = sock
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devstack-oauth", daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        except BaseException as error:  # reported by start(); a thread cannot raise to its creator
            self._failure = error
        finally:
            self._loop.close()

    def start(self, timeout: float) -> None:
        """Start serving; return once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise StartupError(f"the server thread stopped while starting: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"the server did not start within {timeout:.0f}s")
            time.sleep(0.02)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run *coroutine* on the server's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def acall(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* on the server's loop and await its result from another loop."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Ask uvicorn to finish (graceful, at most a few seconds) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
