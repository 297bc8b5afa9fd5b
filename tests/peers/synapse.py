"""A real Synapse homeserver as a test peer: the rendezvous-oriented configuration and pytest fixtures.

Installing, configuring and running Synapse is :mod:`devstack.synapse`'s job (one cached virtualenv serves the
development stack and the tests); this module only chooses the options the rendezvous tests vary. Synapse (AGPL)
runs only as a separate process from that virtualenv; nothing of it is imported into the project's environment.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack._process import StartupError, free_port
from devstack.synapse import SYNAPSE_VERSION, SynapseProcess, ensure_synapse, homeserver_config, synapse_home
from rendezvous.protocol import GEN1_PATH, GEN2_UNSTABLE_PATH

__all__ = [
    "DEAD_MAS_ENDPOINT",
    "SYNAPSE_VERSION",
    "SynapseError",
    "SynapseServer",
    "ensure_synapse",
    "free_port",
    "synapse",
    "synapse_home",
    "synapse_python",
]

# Nothing listens on the discard port, so a Synapse pointed here has MAS mode on (both rendezvous features
# refuse to start without it) yet every token introspection fails fast.
DEAD_MAS_ENDPOINT = "http://127.0.0.1:9/"

# Synapse could not be installed, configured or started. The same class as the development stack's, since
# installing and starting are shared with it; the message ends with the tail of Synapse's logs.
SynapseError = StartupError


class SynapseServer:
    """A real Synapse on 127.0.0.1 with the MSC4108 (Gen-1) and MSC4388 (Gen-2) rendezvous switched on.

    Use as a context manager. Synapse runs in the foreground as a child process, logging to ``homeserver.log``
    in its temporary data directory; :meth:`log_tail` gives the end of it for failure messages.
    """

    def __init__(
        self,
        *,
        msc4108_enabled: bool = True,
        msc4108_delegation_endpoint: str | None = None,
        msc4388_mode: str = "open",
        mas_endpoint: str = DEAD_MAS_ENDPOINT,
        mas_secret: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        # Synapse refuses both options together; delegation wins when a test asks for it.
        self.msc4108_enabled = msc4108_enabled and msc4108_delegation_endpoint is None
        self.msc4108_delegation_endpoint = msc4108_delegation_endpoint
        self.msc4388_mode = msc4388_mode
        self.mas_endpoint = mas_endpoint
        self._mas_secret = mas_secret if mas_secret is not None else secrets.token_urlsafe(24)
        self._overrides = dict(overrides or {})
        self._start_timeout = start_timeout
        self.port = 0
        self.data_dir = Path()
        self._process: SynapseProcess | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        # The MAS shared secret is deliberately absent.
        return f"SynapseServer(base_url={self.base_url!r}, running={self.running})"

    @property
    def mas_secret(self) -> str:
        """The shared secret Synapse expects from the OAuth server (and on ``/_synapse/mas/`` calls)."""
        return self._mas_secret

    @property
    def base_url(self) -> str:
        """Client-Server API base URL, with a trailing slash (as ``public_baseurl``)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def gen1_create_url(self) -> str:
        """Absolute URL of the MSC4108 (Gen-1) create endpoint."""
        return f"http://127.0.0.1:{self.port}{GEN1_PATH}"

    @property
    def gen2_base(self) -> str:
        """Absolute URL of the MSC4388 (Gen-2) rendezvous: discovery and create; sessions live below it."""
        return f"http://127.0.0.1:{self.port}{GEN2_UNSTABLE_PATH}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "homeserver.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def config(self) -> dict[str, Any]:
        """The complete homeserver config: the stack's, with this server's rendezvous options and overrides."""
        experimental: dict[str, Any] = {"msc4388_mode": self.msc4388_mode}
        if self.msc4108_delegation_endpoint is not None:
            experimental["msc4108_delegation_endpoint"] = self.msc4108_delegation_endpoint
        elif self.msc4108_enabled:
            experimental["msc4108_enabled"] = True
        return homeserver_config(
            data_dir=self.data_dir,
            port=self.port,
            server_name="localhost",
            mas_endpoint=self.mas_endpoint,
            mas_secret=self._mas_secret,
            experimental_features=experimental,
            # No test uploads media; without the repository Synapse starts a little faster.
            overrides={"enable_media_repo": False, **self._overrides},
        )

    def start(self) -> SynapseServer:
        """Start Synapse in a fresh temporary data directory; return once it answers, or raise SynapseError."""
        python = ensure_synapse()
        self._tmp = tempfile.TemporaryDirectory(prefix="qrlink-synapse-")
        self.data_dir = Path(self._tmp.name)
        self.port = free_port()
        self._process = SynapseProcess(python, self.data_dir, self.config())
        try:
            self._process.start(self._start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 4000) -> str:
        """The end of Synapse's console output and log file, for failure messages."""
        return self._process.log_tail(chars) if self._process is not None else "(Synapse not started)"

    def stop(self) -> None:
        """Stop Synapse by its PID (SIGTERM, then SIGKILL) and remove its data directory."""
        process, self._process = self._process, None
        if process is not None:
            process.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SynapseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def synapse_python() -> Path:
    """Installs Synapse once (cached across runs), returning its virtualenv's Python.

    A cold install's progress goes straight to the terminal, past pytest's output capture.
    """
    return ensure_synapse()


@pytest.fixture(scope="session")
def synapse(synapse_python: Path) -> Iterator[SynapseServer]:
    """One Synapse for the whole test session, serving Gen-1 (``msc4108_enabled``) and Gen-2 (``open``)."""
    with SynapseServer() as server:
        yield server
