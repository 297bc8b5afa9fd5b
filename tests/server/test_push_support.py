"""Helpers (no tests) for the push, metrics and logging tests: a CLI server whose process can be measured and
whose output is kept, raw parked requests, and a parser for the metrics exposition."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rendezvous.protocol import HEALTH_PATH, METRICS_PATH
from tests.support.server import REPO_ROOT, STARTUP_TIMEOUT_S, clean_environ, free_port

#: Settings for servers whose tests must not throttle themselves.
NO_LIMITS = {"RENDEZVOUS_CREATE_RATE_PER_SECOND": "0", "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0"}


@dataclass
class ServerProcess:
    """A server started through its CLI: its URL, its process, and the file its output goes to."""

    base_url: str
    process: subprocess.Popen[bytes]
    output: Path

    def log_text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / _CLOCK_TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cli_server(output: Path, env: Mapping[str, str] | None = None) -> Iterator[ServerProcess]:
    """``python -m rendezvous serve`` in a subprocess, its stdout and stderr going to ``output``."""
    port = free_port()
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rendezvous", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=clean_environ({"RENDEZVOUS_LOG_LEVEL": "warning", **(env or {})}),
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited during startup:\n{output.read_text()}")
            try:
                if httpx.get(f"{base_url}{HEALTH_PATH}", timeout=1).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not come up")
            time.sleep(0.05)
        yield ServerProcess(base_url, proc, output)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of ``/metrics``: ``(name, sorted labels) -> value``."""
    response = httpx.get(f"{base_url}{METRICS_PATH}", timeout=10)
    assert response.status_code == 200, response.text
    return parse_exposition(response.text)


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value, 0 when absent (a labelled counter appears only once it was touched)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class ParkedRequest:
    """A raw HTTP/1.1 request on its own connection, left waiting for its answer (a long-poll)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base_url: str, path: str, headers: Mapping[str, str] | None = None) -> ParkedRequest:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        return cls(reader, writer)

    async def status(self) -> int:
        line = await self.reader.readline()
        return int(line.split()[1])

    def abort(self) -> None:
        """Drop the connection without reading the answer, as a client that gave up would."""
        self.writer.close()
