"""The servers under test, each started as a subprocess on a free 127.0.0.1 port and stopped by its PID."""

from __future__ import annotations

import importlib.util
import secrets
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack._process import ManagedProcess, child_environment, free_port, wait_for_http
from rendezvous.protocol import HEALTH_PATH

#: Nothing listens on the discard port: Synapse gets MAS mode (which both rendezvous features require) without
#: a real MAS, and the rendezvous endpoints need no token.
_DEAD_MAS_ENDPOINT = "http://127.0.0.1:9/"
START_TIMEOUT_S = 90.0

Progress = Callable[[str], None]

#: Our server's settings for every run. Every simulated client shares 127.0.0.1, so the per-address rate limits
#: (1 create/s, 20 requests/s by default) would throttle the load generator itself; they are switched off.
#: The session cap is raised for the idle-sessions measurement, the TTL set to its maximum so no session
#: expires during a run.
_OUR_SETTINGS = {
    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
    "RENDEZVOUS_MAX_SESSIONS": "1000000",
    "RENDEZVOUS_TTL_SECONDS": "300",
    "RENDEZVOUS_LOG_LEVEL": "warning",
    "RENDEZVOUS_ACCESS_LOG": "false",
    # The scenarios' pollers send plain If-None-Match GETs: held, they would measure holds, not the poll path.
    # Holds have their own target (memory-holds) and scenario.
    "RENDEZVOUS_HOLD_ENABLED": "false",
}
#: memory-holds and redis-holds: held polls on, held long enough to measure (60 s), and no per-address cap (every
#: simulated device shares 127.0.0.1); the server-wide cap stays at its default of 10,000.
_HOLD_SETTINGS = {
    "RENDEZVOUS_HOLD_ENABLED": "true",
    "RENDEZVOUS_HOLD_MS": "60000",
    "RENDEZVOUS_HOLD_MAX_PER_ADDRESS": "1000000",
}

# Synapse logs every request at INFO; our server logs none. WARNING keeps the comparison about request handling.
_SYNAPSE_LOG_CONFIG = """\
version: 1
handlers:
  file:
    class: logging.FileHandler
    filename: {log_file}
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


@dataclass(frozen=True)
class Target:
    """One server configuration to measure."""

    name: str
    description: str
    #: ``ours``, ``synapse`` or ``bare`` (the ceiling: answers every request with a fixed 200).
    kind: str
    #: ``uvicorn``, ``granian`` or ``twisted`` (Synapse).
    stack: str = "uvicorn"
    workers: int = 1
    redis: bool = False
    #: Held Gen-1 polls on (our server only).
    holds: bool = False

    @property
    def has_sessions(self) -> bool:
        return self.kind != "bare"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("memory", "ours, memory store, 1 worker, uvicorn", "ours"),
        Target("memory-holds", "ours, memory store, 1 worker, uvicorn, held Gen-1 polls on", "ours", holds=True),
        Target(
            "redis-holds", "ours, Redis store, 1 worker, uvicorn, held Gen-1 polls on", "ours", redis=True, holds=True
        ),
        Target("redis", "ours, Redis store, 2 workers, uvicorn", "ours", workers=2, redis=True),
        Target("memory-granian", "ours, memory store, 1 worker, granian", "ours", stack="granian"),
        Target(
            "memory-holds-granian",
            "ours, memory store, 1 worker, granian, held Gen-1 polls on",
            "ours",
            stack="granian",
            holds=True,
        ),
        Target(
            "redis-granian", "ours, Redis store, 2 workers, granian", "ours", stack="granian", workers=2, redis=True
        ),
        Target("synapse", "Synapse 1.163.2, Gen-1 + Gen-2 rendezvous, 1 process", "synapse", stack="twisted"),
        Target("bare", "bare ASGI endpoint, uvicorn (uvloop + httptools)", "bare"),
        Target("bare-granian", "bare ASGI endpoint, granian", "bare", stack="granian"),
    )
}


def granian_available() -> bool:
    return importlib.util.find_spec("granian") is not None


@dataclass
class RunningServer:
    """A started target: where it listens and the PID whose process tree is measured."""

    target: Target
    port: int
    pid: int
    stop: Callable[[], None]
    redis_url: str | None = None
    log_tail: Callable[[], str] = field(default=lambda: "")

    host: str = "127.0.0.1"

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(target: Target, workdir: Path, *, redis_url: str, progress: Progress) -> RunningServer:
    """Start ``target`` and return once it answers HTTP."""
    if target.kind == "synapse":
        return _start_synapse(workdir, progress)
    port = free_port()
    python = sys.executable
    env = child_environment()
    app, ready_path = "bench.bare:app", "/"
    if target.kind == "ours":
        env.update(_OUR_SETTINGS)
        env["RENDEZVOUS_STORE_URL"] = redis_url if target.redis else "memory://"
        env["RENDEZVOUS_WORKERS"] = str(target.workers)
        if target.holds:
            env.update(_HOLD_SETTINGS)
        ready_path = HEALTH_PATH
    if target.kind == "ours":
        # Exactly what an operator runs; settings come from the RENDEZVOUS_* variables above. `--server granian`
        # runs the same app factory under granian (--interface asgi --loop uvloop --http 1 --backlog 2048).
        argv = [python, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if target.stack == "granian":
            argv += ["--server", "granian"]
    elif target.stack == "granian":
        # --backlog 2048: uvicorn's default listen backlog; granian's own (1024) drops SYNs when a thousand
        # devices connect within a second, which would measure TCP retransmission timers, not the server.
        argv = [
            python, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(target.workers), "--loop", "uvloop", "--http", "1", "--backlog", "2048",
            "--log-level", "warning", "--no-access-log", app,
        ]  # fmt: skip
    else:
        argv = [
            python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--log-level", "warning", "--no-access-log", "--no-server-header",
        ]  # fmt: skip
    process = ManagedProcess(target.name, argv, log_path=workdir / f"{target.name}.log", cwd=Path.cwd(), env=env)
    process.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}{ready_path}", process=process, timeout=START_TIMEOUT_S)
    except BaseException:
        process.stop()
        raise
    assert process.pid is not None
    return RunningServer(
        target,
        port,
        process.pid,
        process.stop,
        redis_url=redis_url if target.redis else None,
        log_tail=process.log_tail,
    )


def _start_synapse(workdir: Path, progress: Progress) -> RunningServer:
    from devstack.synapse import SynapseProcess, ensure_synapse, homeserver_config

    python = ensure_synapse(progress)
    data_dir = Path(tempfile.mkdtemp(prefix="synapse-", dir=workdir))
    port = free_port()
    config = homeserver_config(
        data_dir=data_dir,
        port=port,
        server_name="localhost",
        mas_endpoint=_DEAD_MAS_ENDPOINT,
        mas_secret=secrets.token_urlsafe(24),
    )
    synapse = SynapseProcess(python, data_dir, config)
    (data_dir / "log.yaml").write_text(_SYNAPSE_LOG_CONFIG.format(log_file=synapse.log_file))
    synapse.start(timeout=START_TIMEOUT_S)
    pid = synapse.pid
    assert pid is not None
    return RunningServer(TARGETS["synapse"], port, pid, synapse.stop, log_tail=synapse.log_tail)
