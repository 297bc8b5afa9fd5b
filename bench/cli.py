"""``python -m bench``: start each target in turn, run the scenarios against it, print the tables and targets.

Every server is a subprocess on a free 127.0.0.1 port, stopped by its PID when its scenarios are done. Every
load loop is bounded in time and in count. See ``docs/benchmarks.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import delivery, holds, idle, logins, saturate, sessions, targets
from bench.aio import run_async
from bench.http1 import Connection
from bench.report import Report
from bench.stats import median
from bench.targets import RunningServer, Target

SCENARIOS = ("saturate", "delivery", "logins", "idle", "holds")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"


@dataclass(frozen=True)
class Plan:
    """How much of each scenario to run: the full default run or ``--quick``."""

    reps: int
    seconds: float
    logins: int
    idle_memory: int
    idle_other: int
    delivery_pairs: int
    delivery_messages: int

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Plan:
        base = cls(1, 2.0, 200, 20_000, 5_000, 10, 3) if args.quick else cls(3, 5.0, 1000, 100_000, 10_000, 25, 4)
        return cls(
            reps=args.reps or base.reps,
            seconds=args.seconds or base.seconds,
            logins=args.logins or base.logins,
            idle_memory=args.idle or base.idle_memory,
            idle_other=args.idle or base.idle_other,
            delivery_pairs=base.delivery_pairs,
            delivery_messages=base.delivery_messages,
        )


@dataclass
class Results:
    """Everything measured, as plain data (also written with ``--json``)."""

    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    saturate: list[dict[str, Any]] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    idle: list[dict[str, Any]] = field(default_factory=list)
    delivery: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0] if __doc__ else "",
        epilog="`python -m bench demo-login --help`: end-to-end time of `qrlink demo --auto`'s login, poll vs push",
    )
    parser.add_argument("--quick", action="store_true", help="one short repetition of smaller runs (~3 min)")
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(targets.TARGETS),
        metavar="TARGET",
        help=f"servers to measure (default: all): {', '.join(targets.TARGETS)}",
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIOS, metavar="SCENARIO", help=f"default all: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--reps", type=int, help="repetitions of the timed runs; medians are reported (default 3)")
    parser.add_argument("--seconds", type=float, help="length of one saturation run (default 5)")
    parser.add_argument("--logins", type=int, help="simultaneous logins (default 1000)")
    parser.add_argument("--idle", type=int, help="idle sessions to create (default 100000 memory, 10000 others)")
    parser.add_argument("--holds", type=int, default=10_000, help="concurrent held polls (default 10000)")
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis database the bench owns and empties before and after (default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the raw results as JSON")
    return parser


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _machine(use_wrk: bool) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("uvicorn", "uvloop", "httptools", "granian", "redis", "hiredis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    load = "python (bench.http1)"
    if use_wrk:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        load = (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "wrk"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_generator": load,
        "versions": versions,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
    }


def _redis_reset(url: str) -> bool:
    """Empty the bench's Redis database; False when Redis is unreachable."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


def _fresh_session(port: int, generation: int) -> sessions.Handle:
    async def main() -> sessions.Handle:
        conn = Connection("127.0.0.1", port)
        try:
            return await sessions.create(conn, generation, sessions.payload(1024, "00"))
        finally:
            await conn.close()

    return run_async(main())


def _saturate(server: RunningServer, plan: Plan, use_wrk: bool, results: Results) -> None:
    target = server.target
    paths: list[str] = ["gen1-304", "gen2-get"] if target.has_sessions else ["bare-200"]
    for kind in paths:
        runs = []
        for rep in range(plan.reps):
            if kind == "bare-200":
                path, headers, expected = "/", [], 200
            else:
                # A fresh session per repetition: Synapse's sessions live only a minute or two.
                handle = _fresh_session(server.port, 1 if kind == "gen1-304" else 2)
                path = handle.path
                headers = [("If-None-Match", handle.token)] if kind == "gen1-304" else []
                expected = 304 if kind == "gen1-304" else 200
            result = saturate.run(
                server.port, path, headers, expected, plan.seconds, server_pid=server.pid, use_wrk=use_wrk
            )
            _progress(
                f"  {target.name} {kind} rep {rep + 1}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                f"{result.errors} errors"
            )
            runs.append(result)
        results.saturate.append(
            {
                "target": target.name,
                "path": kind,
                "rps": median([r.rps for r in runs]),
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "errors": sum(r.errors for r in runs),
                "cpu_per_1k": median([r.cpu_per_1k for r in runs]),
                "reps": [asdict(r) | {"rps": r.rps} for r in runs],
            }
        )


def _delivery(server: RunningServer, plan: Plan, results: Results) -> None:
    target = server.target
    advertised = delivery.push_header(server.port) if target.kind == "ours" else None
    for generation in (1, 2):
        modes = [("poll 1 s", False), ("push long-poll", True)]
        for mode, push in modes:
            if push and advertised is None:
                results.delivery.append(
                    {"target": target.name, "generation": generation, "mode": mode, "available": False}
                )
                continue
            result = delivery.run(
                server.port, generation, push=push, pairs=plan.delivery_pairs, messages=plan.delivery_messages
            )
            _progress(f"  {target.name} Gen-{generation} {mode}: p50 {result.p50_ms:.1f} ms ({result.samples})")
            results.delivery.append(
                {"target": target.name, "generation": generation, "mode": mode, "available": True} | asdict(result)
            )


def _logins(server: RunningServer, plan: Plan, results: Results) -> None:
    runs = []
    for rep in range(plan.reps):
        result = logins.run(server.port, plan.logins, server_pid=server.pid)
        _progress(
            f"  {server.target.name} logins rep {rep + 1}: {result.completed}/{result.logins} done, "
            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors {result.error_kinds or ''}, "
            f"client lag p99 {result.client_lag_p99_ms:.1f} ms"
        )
        runs.append(result)
    results.logins.append(
        {
            "target": server.target.name,
            "logins": plan.logins,
            "completed": median([r.completed for r in runs]),
            "rps": median([r.rps for r in runs]),
            "p50_ms": median([r.p50_ms for r in runs]),
            "p99_ms": median([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "cpu_per_1k": median([r.cpu_per_1k for r in runs]),
            "login_p50_s": median([r.login_p50_s for r in runs]),
            "client_lag_p99_ms": median([r.client_lag_p99_ms for r in runs]),
            "connect_p99_ms": median([r.connect_p99_ms for r in runs]),
            "reps": [asdict(r) for r in runs],
        }
    )


def _idle(server: RunningServer, plan: Plan, results: Results) -> None:
    target = server.target
    count = plan.idle_memory if target.kind == "ours" and not target.redis else plan.idle_other
    result = idle.run(server.port, count, server_pid=server.pid, redis_url=server.redis_url)
    _progress(
        f"  {target.name} idle: {result.sessions} sessions, RSS {result.rss_before_mb:.1f} -> "
        f"{result.rss_after_mb:.1f} MB"
    )
    results.idle.append(
        {"target": target.name, "per_10k_mb": result.per_10k_mb, "redis_per_10k_mb": result.redis_per_10k_mb}
        | asdict(result)
    )


def _holds(server: RunningServer, count: int, results: Results) -> None:
    result = holds.run(server.port, count, server_pid=server.pid)
    _progress(
        f"  {server.target.name} holds: {result.held} held, RSS {result.rss_before_mb:.1f} -> "
        f"{result.rss_after_mb:.1f} MB, idle CPU {result.idle_cpu_s:.2f} s, wake p50 {result.wake_p50_ms:.1f} ms"
    )
    results.holds.append({"target": server.target.name, "per_10k_mb": result.per_10k_mb} | asdict(result))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo-login"]:  # its own command: one dev stack, not the targets below (bench/demo_login.py)
        from bench import demo_login

        return demo_login.main(argv[1:])
    if argv[:1] == ["jssdk"]:  # its own command: three dev stacks and js-sdk in Node (bench/jssdk.py)
        from bench import jssdk

        return jssdk.main(argv[1:])
    args = _parser().parse_args(argv)
    plan = Plan.for_args(args)
    chosen = [targets.TARGETS[name] for name in (args.targets or targets.TARGETS)]
    scenarios = args.scenarios or list(SCENARIOS)
    use_wrk = saturate.wrk_available() and not args.python_load
    results = Results(machine=_machine(use_wrk))
    if not use_wrk:
        why = "--python-load given" if args.python_load else "wrk not found (install: apt-get install -y wrk)"
        results.notes.append(f"{why}: saturation used the Python load generator, whose own CPU use lowers every figure")
    runnable: list[Target] = []
    for target in chosen:
        if target.stack == "granian" and not targets.granian_available():
            results.notes.append(f"{target.name} skipped: granian not installed (pip install granian)")
        elif target.redis and not _redis_reset(args.redis_url):
            results.notes.append(f"{target.name} skipped: Redis not reachable at the --redis-url")
        else:
            runnable.append(target)

    steps: dict[str, Callable[[RunningServer], None]] = {
        "saturate": lambda server: _saturate(server, plan, use_wrk, results),
        "delivery": lambda server: _delivery(server, plan, results),
        "logins": lambda server: _logins(server, plan, results),
        "idle": lambda server: _idle(server, plan, results),
        "holds": lambda server: _holds(server, args.holds, results),
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qrlink-bench-") as workdir:
        for target in runnable:
            _progress(f"starting {target.name}: {target.description}")
            if target.redis:
                _redis_reset(args.redis_url)
            try:
                server = targets.start(target, Path(workdir), redis_url=args.redis_url, progress=_progress)
            except Exception as exc:  # a target that cannot start is reported, the others still run
                results.notes.append(f"{target.name} did not start: {str(exc).splitlines()[0]}")
                _progress(f"{target.name} did not start:\n{exc}")
                continue
            with server:
                for scenario in scenarios:
                    if scenario != "saturate" and not target.has_sessions:
                        continue
                    # The -holds targets run delivery (their 1 s pollers held) and holds; holds runs on nothing else.
                    if (target.holds and scenario not in ("delivery", "holds")) or (
                        scenario == "holds" and not target.holds
                    ):
                        continue
                    try:
                        steps[scenario](server)
                    except Exception as exc:  # keep the rest of the run; the note says what is missing
                        results.notes.append(f"{target.name} {scenario} failed: {type(exc).__name__}: {exc}")
                        _progress(f"{target.name} {scenario} failed: {exc!r}\n{server.log_tail()}")
            if target.redis:
                _redis_reset(args.redis_url)
    results.machine["elapsed_s"] = round(time.monotonic() - started)
    print(Report(results.__dict__).render())
    if args.json is not None:
        args.json.write_text(json.dumps(results.__dict__, indent=2, default=str))
    return 0
