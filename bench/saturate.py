"""Saturation: one hot request path hammered by a closed loop of 32 connections for a fixed time.

``wrk`` (``apt-get install -y wrk``) drives the load when it is installed: its C event loop costs far less CPU
than any Python client, which matters when client and server share two cores. Without it, a Python load
generator with the same shape runs instead (and the table says so); its numbers are lower because it competes
with the server for CPU.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.aio import run_async
from bench.http1 import Connection, HttpError
from bench.stats import percentile

CONNECTIONS = 32
#: Upper bound on requests of one Python-driven run, whatever its duration.
PYTHON_MAX_REQUESTS = 2_000_000

# Counts answers other than the expected status (wrk's own error count only covers non-2xx/3xx) and prints one
# JSON line the bench parses. Latencies are in microseconds.
_WRK_SCRIPT = """\
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  expected = tonumber(args[1])
  wrong = 0
end
function response(status, headers, body)
  if status ~= expected then wrong = wrong + 1 end
end
function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + t:get("wrong") end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "socket_errors": %d, "wrong": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, w))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One load run: request count, wall time, latency percentiles, errors and the server's CPU time."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu_seconds / self.requests if self.requests else float("nan")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    expected: int,
    seconds: float,
    *,
    server_pid: int,
    use_wrk: bool,
) -> LoadResult:
    """Drive ``GET path`` for ``seconds`` and measure the server's CPU over exactly that window."""
    cpu_before = procs.cpu_seconds(server_pid)
    if use_wrk:
        requests, elapsed, p50, p99, errors = _run_wrk(port, path, headers, expected, seconds)
    else:
        requests, elapsed, p50, p99, errors = _run_python(port, path, headers, expected, seconds)
    cpu = procs.cpu_seconds(server_pid) - cpu_before
    return LoadResult(requests, elapsed, p50, p99, errors, cpu)


def _run_wrk(
    port: int, path: str, headers: list[tuple[str, str]], expected: int, seconds: float
) -> tuple[int, float, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        script = Path(folder) / "count.lua"
        script.write_text(_WRK_SCRIPT)
        argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "-s", str(script)]
        for name, value in headers:
            argv += ["-H", f"{name}: {value}"]
        argv += [f"http://127.0.0.1:{port}{path}", "--", str(expected)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[len("BENCH ") :])
            return (
                data["requests"],
                data["duration_us"] / 1e6,
                data["p50_us"] / 1000,
                data["p99_us"] / 1000,
                data["socket_errors"] + data["wrong"],
            )
    raise RuntimeError(f"wrk gave no result (exit {result.returncode}): {result.stderr.strip()[:500]}")


def _run_python(
    port: int, path: str, headers: list[tuple[str, str]], expected: int, seconds: float
) -> tuple[int, float, float, float, int]:
    latencies: list[float] = []
    errors = 0

    async def client(deadline: float) -> None:
        nonlocal errors
        conn = Connection("127.0.0.1", port, timeout=5.0)
        try:
            while time.perf_counter() < deadline and len(latencies) < PYTHON_MAX_REQUESTS:
                started = time.perf_counter()
                try:
                    reply = await conn.request("GET", path, headers)
                except HttpError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if reply.status != expected:
                    errors += 1
        finally:
            await conn.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds) for _ in range(CONNECTIONS)))
        return time.perf_counter() - started

    elapsed = run_async(main())
    return (len(latencies), elapsed, 1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99), errors)
