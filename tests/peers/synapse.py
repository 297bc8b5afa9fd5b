"""A real Synapse homeserver as a test peer: installer, configured server process, pytest fixture.

Synapse (AGPL) runs only as a separate process from its own virtualenv in the peer cache; nothing of it is
imported into the project's environment.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.peers._cache import cache_dir, file_lock, progress, uncaptured

SYNAPSE_VERSION = "1.163.2"
GEN1_CREATE_PATH = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
GEN2_PATH = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
# Nothing listens on the discard port, so a Synapse pointed here has MAS mode on (both rendezvous features
# refuse to start without it) yet every token introspection fails fast.
DEAD_MAS_ENDPOINT = "http://127.0.0.1:9/"


class SynapseError(RuntimeError):
    """Synapse could not be installed, configured or started."""


def synapse_home() -> Path:
    """The cache folder holding this Synapse version's virtualenv."""
    return cache_dir() / f"synapse-{SYNAPSE_VERSION}"


def ensure_synapse() -> Path:
    """Install ``matrix-synapse`` into its own cached virtualenv (once) and return that venv's Python."""
    home = synapse_home()
    python = home / "venv" / "bin" / "python"
    stamp = home / ".installed"
    if _installed(stamp, python):
        return python
    with file_lock(cache_dir() / f"synapse-{SYNAPSE_VERSION}.lock"):
        if _installed(stamp, python):  # another process finished the install while we waited
            return python
        started = time.monotonic()
        shutil.rmtree(home / "venv", ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        log = home / "install.log"
        progress(f"installing matrix-synapse {SYNAPSE_VERSION} into {home} (first run only, ~1-2 min)")
        with open(log, "w") as log_file:
            _run_logged([sys.executable, "-m", "venv", str(home / "venv")], log_file, log)
            _run_logged(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                    f"matrix-synapse=={SYNAPSE_VERSION}",
                ],
                log_file,
                log,
            )
        stamp.write_text(SYNAPSE_VERSION)
        progress(f"matrix-synapse {SYNAPSE_VERSION} installed in {time.monotonic() - started:.0f}s")
    return python


def _installed(stamp: Path, python: Path) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == SYNAPSE_VERSION and python.exists()


def _run_logged(command: list[str], log_file: IO[str], log: Path) -> None:
    """Run *command* with its output appended to *log*, reporting progress about every 10 s."""
    log_file.write(f"$ {' '.join(command)}\n")
    log_file.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    collected, last_report = 0, time.monotonic()
    for line in process.stdout:
        log_file.write(line)
        if line.startswith(("Collecting ", "Processing ")):
            collected += 1
        if time.monotonic() - last_report > 10:
            progress(f"  ... {collected} distributions resolved; now: {line.strip()[:100]}")
            last_report = time.monotonic()
    returncode = process.wait()
    log_file.flush()
    if returncode != 0:
        tail = log.read_text()[-3000:]
        raise SynapseError(
            f"command failed ({returncode}): {' '.join(command)}\n--- {log} (tail) ---\n{tail}"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge *overrides* into *base* (nested dicts merge, everything else replaces)."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_file}
    filters: [context]
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


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
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.data_dir = Path()

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
        return f"http://127.0.0.1:{self.port}{GEN1_CREATE_PATH}"

    @property
    def gen2_base(self) -> str:
        """Absolute URL of the MSC4388 (Gen-2) rendezvous: discovery and create; sessions live below it."""
        return f"http://127.0.0.1:{self.port}{GEN2_PATH}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "homeserver.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def config(self) -> dict[str, Any]:
        """The complete homeserver config (JSON is YAML, so it is written as JSON)."""
        experimental: dict[str, Any] = {"msc4388_mode": self.msc4388_mode}
        if self.msc4108_delegation_endpoint is not None:
            experimental["msc4108_delegation_endpoint"] = self.msc4108_delegation_endpoint
        elif self.msc4108_enabled:
            experimental["msc4108_enabled"] = True
        config: dict[str, Any] = {
            "server_name": "localhost",
            "public_baseurl": self.base_url,
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / "homeserver.db")}},
            "log_config": str(self.data_dir / "log.yaml"),
            "media_store_path": str(self.data_dir / "media_store"),
            "enable_media_repo": False,
            "signing_key_path": str(self.data_dir / "signing.key"),
            "macaroon_secret_key": secrets.token_urlsafe(32),
            "form_secret": secrets.token_urlsafe(32),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "enable_registration": False,
            "password_config": {"enabled": False},
            "matrix_authentication_service": {
                "enabled": True,
                "endpoint": self.mas_endpoint,
                "secret": self._mas_secret,
            },
            "experimental_features": experimental,
        }
        return _merge(config, self._overrides)

    def start(self) -> SynapseServer:
        python = ensure_synapse()
        self._tmp = tempfile.TemporaryDirectory(prefix="qrlink-synapse-")
        self.data_dir = Path(self._tmp.name)
        self.port = free_port()
        (self.data_dir / "log.yaml").write_text(_LOG_CONFIG.format(log_file=self.log_file))
        # signedjson's key-file format: "<algorithm> <version> <unpadded base64 seed>".
        seed = secrets.token_bytes(32)
        (self.data_dir / "signing.key").write_text(
            f"ed25519 a_test {base64.b64encode(seed).decode().rstrip('=')}\n"
        )
        config_path = self.data_dir / "homeserver.yaml"
        config_path.write_text(json.dumps(self.config(), indent=2))
        console = open(self.data_dir / "console.log", "wb")
        try:
            self.process = subprocess.Popen(
                [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)],
                cwd=self.data_dir,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            console.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        url = f"{self.base_url}_matrix/client/versions"
        with httpx.Client(timeout=2.0) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise SynapseError(
                        f"Synapse exited with {self.process.returncode} while starting\n{self.log_tail()}"
                    )
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SynapseError(
                        f"Synapse did not answer {url} within {self._start_timeout}s\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of Synapse's console output and log file, for failure messages."""
        parts = []
        for path in (self.data_dir / "console.log", self.log_file):
            if path.is_file():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts) or "(no Synapse output)"

    def stop(self) -> None:
        """Stop Synapse by its PID: SIGTERM, wait, then SIGKILL; remove its data directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SynapseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def synapse_python(pytestconfig: pytest.Config) -> Path:
    """Installs Synapse once (cached across runs), returning its virtualenv's Python."""
    with uncaptured(pytestconfig):
        return ensure_synapse()


@pytest.fixture(scope="session")
def synapse(synapse_python: Path) -> Iterator[SynapseServer]:
    """One Synapse for the whole test session, serving Gen-1 (``msc4108_enabled``) and Gen-2 (``open``)."""
    with SynapseServer() as server:
        yield server
