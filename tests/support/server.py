"""Run the rendezvous server for tests: under real uvicorn, on a real socket on 127.0.0.1.

Two ways, both yielding the base URL (``http://127.0.0.1:PORT``):

* :func:`serve_cli` starts ``python -m rendezvous serve`` in a subprocess, configured by ``RENDEZVOUS_*``
  variables: exactly what an operator runs.
* :func:`serve_app` runs an app object under ``uvicorn.Server`` in a thread of the test process, for
  variants that need an object handed in (a store with a test clock). :func:`serve_settings` builds the
  app from settings.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from devstack._process import free_port as free_port  # re-exported for the other test helpers
from rendezvous.app import create_app
from rendezvous.config import load_settings
from rendezvous.protocol import HEALTH_PATH
from rendezvous.store import SessionStore

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any ``RENDEZVOUS_*`` settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RENDEZVOUS_", "_RENDEZVOUS"))}
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rendezvous ARGS`` to completion (for commands that exit)."""
    return subprocess.run(
        [sys.executable, "-m", "rendezvous", *args],
        env=clean_environ(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_healthy(base_url: str, alive: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server exited during startup")
        try:
            if httpx.get(f"{base_url}{HEALTH_PATH}", timeout=1).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {base_url} did not come up within {STARTUP_TIMEOUT_S} s")


@contextlib.contextmanager
def serve_cli(env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> Iterator[str]:
    """Start the server through its CLI in a subprocess; stop it (SIGTERM, then kill) on exit."""
    with serve_cli_process(env, args) as (_, base_url):
        yield base_url


@contextlib.contextmanager
def serve_cli_process(
    env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """:func:`serve_cli`, also yielding the process (for tests that signal it themselves)."""
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=clean_environ({"RENDEZVOUS_LOG_LEVEL": "warning", **(env or {})}),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base_url, lambda proc=proc: proc.poll() is None)
        except RuntimeError:
            _, stderr = proc.communicate(timeout=10)
            # Another process may have taken the port between free_port() and bind: try a new one.
            if "address already in use" in stderr.lower() and attempt < 2:
                continue
            raise RuntimeError(f"server failed to start:\n{stderr}") from None
        except BaseException:
            proc.kill()
            proc.communicate(timeout=10)
            raise
        try:
            yield proc, base_url
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
        return


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app under ``uvicorn.Server`` in a thread, on a socket bound here (so no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", proxy_headers=False, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("in-thread server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def serve_settings(store: SessionStore | None = None, **settings: Any) -> Iterator[str]:
    """Run the app built from ``settings`` (nothing read from the environment), optionally on ``store``."""
    app = create_app(load_settings(environ={}, **settings), store=store)
    with serve_app(app) as base_url:
        yield base_url
