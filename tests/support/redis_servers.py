"""Throwaway ``redis-server`` processes for tests: a single server, or a 3-master cluster.

Each process binds 127.0.0.1 on a free port, keeps nothing on disk beyond its own temporary directory, and is
stopped by its PID (never by name), so tests can take Redis down and bring it back on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def missing_binaries() -> str | None:
    """Why throwaway servers cannot be started here, or ``None`` if they can."""
    missing = [name for name, path in (("redis-server", REDIS_SERVER), ("redis-cli", REDIS_CLI)) if path is None]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A free local port; with ``with_cluster_bus``, port + 10000 (the cluster bus) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not with_cluster_bus:
            return port
        if port + 10_000 <= 65_535 and _port_is_free(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64)


@dataclass
class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` can be called again and again."""

    port: int
    directory: str
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, *, timeout_s: float = 10.0) -> None:
        assert REDIS_SERVER is not None, missing_binaries()
        assert self.process is None, "already running"
        args = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", self.directory,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", os.path.join(self.directory, f"redis-{self.port}.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server on port {self.port} exited at start-up")
            with contextlib.suppress(OSError):
                if _ping(self.port).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the process by its PID and wait for it (SIGKILL: an outage, not a clean shutdown)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running single ``redis-server`` on a free port, stopped afterwards whatever happens."""
    with tempfile.TemporaryDirectory(prefix="rz-redis-") as directory:
        server = RedisServer(port=free_port(), directory=directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class RedisCluster:
    """Three ``redis-server`` masters (no replicas) forming one cluster."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"


def _cluster_ok(port: int) -> bool:
    assert REDIS_CLI is not None
    result = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
        capture_output=True,
        timeout=5,
        check=False,
    )
    return b"cluster_state:ok" in result.stdout


@contextlib.contextmanager
def redis_cluster(*, timeout_s: float = 30.0) -> Iterator[RedisCluster]:
    """A 3-master cluster on free ports, built with ``redis-cli --cluster create``, always torn down."""
    assert REDIS_CLI is not None, missing_binaries()
    with tempfile.TemporaryDirectory(prefix="rz-cluster-") as directory:
        nodes: list[RedisServer] = []
        try:
            for _ in range(3):
                port = free_port(with_cluster_bus=True)
                node_dir = os.path.join(directory, str(port))
                os.mkdir(node_dir)
                node = RedisServer(
                    port=port,
                    directory=node_dir,
                    extra_args=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", os.path.join(node_dir, "nodes.conf"),
                        "--cluster-node-timeout", "2000",
                    ),
                )  # fmt: skip
                nodes.append(node)
                node.start()
            create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)]
            subprocess.run(
                [*create, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                timeout=timeout_s,
                check=True,
            )
            deadline = time.monotonic() + timeout_s
            while not all(_cluster_ok(n.port) for n in nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            yield RedisCluster(nodes)
        finally:
            for node in nodes:
                node.stop()
