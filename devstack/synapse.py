"""A real Synapse for the stack: installed once into its own cached virtualenv, configured for MAS mode, run.

Synapse (AGPL) runs only as a separate process from that virtualenv; nothing of it is imported here. The
cache layout (``$QRLINK_CACHE`` or ``~/.cache/qrlink``, then ``synapse-<version>/venv`` with an ``.installed``
stamp and a ``synapse-<version>.lock`` beside it) also holds the test suite's other installed peers, and the
test suite's Synapse peer is built on this module, so one install serves both.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from devstack._process import ManagedProcess, StartupError, child_environment, wait_for_http

SYNAPSE_VERSION = "1.163.2"

Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    # sys.__stderr__ bypasses pytest's capture: a cold install is slow and must not look like a hang.
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"[devstack {time.strftime('%H:%M:%S')}] {message}\n")
    stream.flush()


def cache_dir() -> Path:
    """The folder holding installed peers: ``$QRLINK_CACHE`` if set, else ``~/.cache/qrlink``."""
    configured = os.environ.get("QRLINK_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "qrlink"
    root.mkdir(parents=True, exist_ok=True)
    return root


def synapse_home() -> Path:
    """The cache folder holding this Synapse version's virtualenv."""
    return cache_dir() / f"synapse-{SYNAPSE_VERSION}"


@contextlib.contextmanager
def install_lock(path: Path, progress: Progress = _stderr_progress) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path*, so two processes never install the same thing into the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process installing into the cache ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_synapse(progress: Progress = _stderr_progress) -> Path:
    """Install ``matrix-synapse`` into its own cached virtualenv (once) and return that venv's Python."""
    home = synapse_home()
    python = home / "venv" / "bin" / "python"
    stamp = home / ".installed"

    def installed() -> bool:
        return stamp.is_file() and stamp.read_text().strip() == SYNAPSE_VERSION and python.exists()

    if installed():
        return python
    with install_lock(cache_dir() / f"synapse-{SYNAPSE_VERSION}.lock", progress):
        if installed():  # another process finished the install while we waited
            return python
        started = time.monotonic()
        shutil.rmtree(home / "venv", ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        log = home / "install.log"
        progress(f"installing matrix-synapse {SYNAPSE_VERSION} into {home} (first run only, ~1-2 min)")
        with open(log, "w") as log_file:
            for command in (
                [sys.executable, "-m", "venv", str(home / "venv")],
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
            ):
                log_file.write(f"$ {' '.join(command)}\n")
                log_file.flush()
                result = subprocess.run(  # noqa: S603 - fixed argv
                    command, stdout=log_file, stderr=subprocess.STDOUT, check=False
                )
                if result.returncode != 0:
                    raise StartupError(
                        f"installing Synapse failed ({result.returncode}): {' '.join(command)}\n"
                        f"--- {log} (tail) ---\n{log.read_text(errors='replace')[-3000:]}"
                    )
        stamp.write_text(SYNAPSE_VERSION)
        progress(f"matrix-synapse {SYNAPSE_VERSION} installed in {time.monotonic() - started:.0f}s")
    return python


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

# Generous limits: tests and demos sign many devices in quickly from one address.
_RELAXED_RATE_LIMIT = {"per_second": 1000, "burst_count": 1000}


def homeserver_config(
    *,
    data_dir: Path,
    port: int,
    server_name: str,
    mas_endpoint: str,
    mas_secret: str,
    experimental_features: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Synapse's configuration for the stack: MAS mode, both rendezvous generations, sqlite, one listener.

    *experimental_features* replaces the default block (``msc4108_enabled`` + ``msc4388_mode: open``) as a
    whole, e.g. for ``msc4108_delegation_endpoint``, which Synapse refuses together with ``msc4108_enabled``.
    *overrides* is deep-merged last.
    """
    if experimental_features is None:
        experimental_features = {"msc4108_enabled": True, "msc4388_mode": "open"}
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "log_config": str(data_dir / "log.yaml"),
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        # MAS mode refuses to start with Synapse's own registration or password login switched on.
        "enable_registration": False,
        "password_config": {"enabled": False},
        "matrix_authentication_service": {"enabled": True, "endpoint": mas_endpoint, "secret": mas_secret},
        "experimental_features": dict(experimental_features),
        "rc_message": _RELAXED_RATE_LIMIT,
        "rc_joins": {"local": _RELAXED_RATE_LIMIT, "remote": _RELAXED_RATE_LIMIT},
        "rc_invites": {"per_room": _RELAXED_RATE_LIMIT, "per_user": _RELAXED_RATE_LIMIT},
        "rc_presence": {"per_user": _RELAXED_RATE_LIMIT},
    }
    return _merge(config, overrides or {})


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge *overrides* into *base* (nested dicts merge, everything else replaces)."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class SynapseProcess:
    """One configured Synapse in *data_dir*, run in the foreground as a child process."""

    def __init__(self, python: Path, data_dir: Path, config: Mapping[str, Any]) -> None:
        self.data_dir = data_dir
        self.port: int = config["listeners"][0]["port"]
        self.base_url: str = config["public_baseurl"]
        self.log_file = data_dir / "homeserver.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "log.yaml").write_text(_LOG_CONFIG.format(log_file=self.log_file))
        # signedjson's key-file format: "<algorithm> <version> <unpadded base64 seed>".
        seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        (data_dir / "signing.key").write_text(f"ed25519 a_devstack {seed}\n")
        config_path = data_dir / "homeserver.yaml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        config_path.chmod(0o600)  # it holds the MAS shared secret
        self._process = ManagedProcess(
            "synapse",
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)],
            log_path=data_dir / "console.log",
            cwd=data_dir,
            env=child_environment(),
        )

    def __repr__(self) -> str:
        return f"SynapseProcess(base_url={self.base_url!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int | None:
        """The PID of the running Synapse process (``None`` before it starts), e.g. to read its CPU time."""
        return self._process.pid

    def start(self, timeout: float) -> None:
        """Start Synapse and return once ``/_matrix/client/versions`` answers."""
        self._process.start()
        try:
            wait_for_http(
                f"{self.base_url}_matrix/client/versions",
                process=self._process,
                timeout=timeout,
                extra_logs=self._homeserver_log_tail,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._process.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of Synapse's console output and its log file, for failure messages."""
        return self._process.log_tail(chars) + self._homeserver_log_tail(chars)

    def _homeserver_log_tail(self, chars: int = 4000) -> str:
        if not self.log_file.is_file():
            return ""
        return f"\n--- {self.log_file} (tail) ---\n{self.log_file.read_text(errors='replace')[-chars:]}"
