"""The printed result: machine, tables per scenario, and each target of the issue checked against the numbers."""

from __future__ import annotations

import math
from typing import Any

_PATH_NAMES = {
    "gen1-304": "Gen-1 poll, If-None-Match → 304",
    "gen2-get": "Gen-2 GET → 200",
    "bare-200": "GET → fixed 200",
}


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


class Report:
    """Renders the results of :func:`bench.cli.main` as Markdown."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.r = results

    def _find(self, section: str, **match: Any) -> dict[str, Any] | None:
        for row in self.r[section]:
            if all(row.get(key) == value for key, value in match.items()):
                return dict(row)
        return None

    def render(self) -> str:
        m = self.r["machine"]
        out = [
            "## Machine",
            "",
            f"- date: {m['date']}; command: `{m['command']}`; took {m.get('elapsed_s', '?')} s",
            f"- {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}",
            f"- load generator: {m['load_generator']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
            "",
        ]
        if self.r["notes"]:
            out += ["Notes:", "", *[f"- {note}" for note in self.r["notes"]], ""]
        if self.r["saturate"]:
            out += ["## Saturation (32 connections, medians of the repetitions)", ""]
            out += _table(
                ["target", "path", "req/s", "p50 ms", "p99 ms", "errors", "CPU s / 1k req"],
                [
                    [
                        row["target"],
                        _PATH_NAMES[row["path"]],
                        _num(row["rps"]),
                        _num(row["p50_ms"], 2),
                        _num(row["p99_ms"], 2),
                        str(row["errors"]),
                        _num(row["cpu_per_1k"], 3),
                    ]
                    for row in self.r["saturate"]
                ],
            )
            out.append("")
        if self.r["logins"]:
            out += [
                "## Realistic logins (both sides poll at 1 Hz, 8 payloads each, medians)",
                "",
                "Request latencies exclude TCP connection set-up (own column). Client lag: how late the load "
                "generator's own event loop ran; it is included in the latencies.",
                "",
            ]
            out += _table(
                [
                    "target",
                    "logins",
                    "completed",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "CPU s / 1k req",
                    "login s",
                    "connect p99 ms",
                    "client lag p99 ms",
                ],
                [
                    [
                        row["target"],
                        str(row["logins"]),
                        _num(row["completed"]),
                        _num(row["rps"]),
                        _num(row["p50_ms"], 2),
                        _num(row["p99_ms"], 2),
                        str(row["errors"]),
                        _num(row["cpu_per_1k"], 3),
                        _num(row["login_p50_s"], 1),
                        _num(row.get("connect_p99_ms"), 1),
                        _num(row.get("client_lag_p99_ms"), 1),
                    ]
                    for row in self.r["logins"]
                ],
            )
            out.append("")
        if self.r["idle"]:
            out += ["## Idle sessions (512-character payload each)", ""]
            out += _table(
                [
                    "target",
                    "sessions",
                    "still live",
                    "RSS before MB",
                    "RSS after MB",
                    "RSS MB / 10k",
                    "Redis MB / 10k",
                    "errors",
                ],
                [
                    [
                        row["target"],
                        _num(row["sessions"]),
                        f"{row['alive']:.0%}" if row.get("alive") == row.get("alive") else "-",
                        _num(row["rss_before_mb"], 1),
                        _num(row["rss_after_mb"], 1),
                        _num(row["per_10k_mb"], 2),
                        _num(row["redis_per_10k_mb"], 2),
                        str(row["errors"]),
                    ]
                    for row in self.r["idle"]
                ],
            )
            out.append("")
        if self.r["delivery"]:
            out += ["## Delivery latency, PUT sent → reader has the message", ""]
            out += _table(
                ["target", "generation", "reader", "samples", "p50 ms", "p99 ms", "errors"],
                [
                    [row["target"], f"Gen-{row['generation']}", row["mode"], "not available", "-", "-", "-"]
                    if not row["available"]
                    else [
                        row["target"],
                        f"Gen-{row['generation']}",
                        row["mode"],
                        str(row["samples"]),
                        _num(row["p50_ms"], 1),
                        _num(row["p99_ms"], 1),
                        str(row["errors"]),
                    ]
                    for row in self.r["delivery"]
                ],
            )
            out.append("")
        if self.r.get("holds"):
            out += ["## Held Gen-1 polls (plain If-None-Match GETs, one connection each)", ""]
            out += _table(
                [
                    "target",
                    "held",
                    "RSS before MB",
                    "RSS after MB",
                    "MB / 10k",
                    "idle CPU s (5 s)",
                    "wake p50 ms",
                    "wake p99 ms",
                    "wake CPU s",
                    "answered 200",
                    "errors",
                ],
                [
                    [
                        row["target"],
                        _num(row["held"]),
                        _num(row["rss_before_mb"], 1),
                        _num(row["rss_after_mb"], 1),
                        _num(row["per_10k_mb"], 1),
                        _num(row["idle_cpu_s"], 2),
                        _num(row["wake_p50_ms"], 1),
                        _num(row["wake_p99_ms"], 1),
                        _num(row["wake_cpu_s"], 2),
                        _num(row["answered_200"]),
                        str(row["errors"]),
                    ]
                    for row in self.r["holds"]
                ],
            )
            out.append("")
        out += ["## Targets", "", *self._targets()]
        return "\n".join(out)

    def _rps(self, target: str, path: str) -> float | None:
        row = self._find("saturate", target=target, path=path)
        return row["rps"] if row else None

    def _ratio_line(self, label: str, ours: str, theirs: str, path: str, needed: float) -> str:
        a, b = self._rps(ours, path), self._rps(theirs, path)
        if not a or not b:
            return f"- {label}: not measured"
        ratio = a / b
        verdict = "MET" if ratio >= needed else "NOT MET"
        return f"- {label}: {ratio:.2f}x ({a:,.0f} vs {b:,.0f} req/s; needed {needed:g}x) — **{verdict}**"

    def _targets(self) -> list[str]:
        lines = [
            self._ratio_line(
                "Gen-1 poll (304), ours (memory, 1 worker) vs Synapse", "memory", "synapse", "gen1-304", 3
            ),
            self._ratio_line("Gen-2 GET, ours (memory, 1 worker) vs Synapse", "memory", "synapse", "gen2-get", 5),
            self._ratio_line("Redis (2 workers) vs memory, Gen-1 poll", "redis", "memory", "gen1-304", 0.7),
            self._ratio_line("Redis (2 workers) vs memory, Gen-2 GET", "redis", "memory", "gen2-get", 0.7),
        ]
        lines += self._stack_lines()
        row = self._find("logins", target="redis")
        if row is None:
            lines.append("- 1,000 logins on Redis, 2 workers, p99 < 50 ms, no errors: not measured")
        else:
            ok = row["logins"] >= 1000 and row["p99_ms"] < 50 and row["errors"] == 0
            lines.append(
                f"- {row['logins']:,} logins on Redis, 2 workers: p99 {row['p99_ms']:.1f} ms, {row['errors']} errors, "
                f"{_num(row['completed'])} completed (needed 1,000 logins, p99 < 50 ms, 0 errors) — "
                f"**{'MET' if ok else 'NOT MET'}**"
            )
        row = self._find("idle", target="memory")
        if row is None:
            lines.append("- 100,000 idle sessions in the memory store under 150 MB RSS: not measured")
        else:
            if row["sessions"] >= 100_000:
                total, how = row["rss_after_mb"], f"{row['sessions']:,} sessions"
            else:
                total = row["rss_before_mb"] + row["per_10k_mb"] * 10
                how = f"projected from {row['sessions']:,} sessions"
            lines.append(
                f"- 100,000 idle sessions, memory store: {total:.0f} MB RSS ({how}; needed < 150 MB) — "
                f"**{'MET' if total < 150 else 'NOT MET'}**"
            )
        lines += self._push_lines()
        for target, store in (("memory-holds", "memory store"), ("redis-holds", "Redis store")):
            row = self._find("holds", target=target)
            if row is None:
                lines.append(f"- 10,000 concurrent held polls, {store}, cost under 100 MB of RSS: not measured")
                continue
            # The cost of the held polls: what the server's RSS grew by while it held them.
            cost = row["rss_after_mb"] - row["rss_before_mb"]
            ok = row["held"] >= 10_000 and cost < 100 and row["errors"] == 0
            lines.append(
                f"- {row['held']:,} concurrent held polls, {store}: +{cost:.0f} MB RSS ({row['rss_before_mb']:.0f} "
                f"→ {row['rss_after_mb']:.0f} MB), {row['idle_cpu_s']:.2f} CPU s idle over 5 s (needed: 10,000 "
                f"cost under 100 MB) — **{'MET' if ok else 'NOT MET'}**"
            )
        return lines

    def _stack_lines(self) -> list[str]:
        lines = []
        for label, uvicorn_name, granian_name, paths in (
            ("our app, memory", "memory", "memory-granian", ("gen1-304", "gen2-get")),
            ("our app, Redis", "redis", "redis-granian", ("gen1-304", "gen2-get")),
            ("bare ASGI", "bare", "bare-granian", ("bare-200",)),
        ):
            for path in paths:
                u, g = self._rps(uvicorn_name, path), self._rps(granian_name, path)
                if u and g:
                    faster = "granian" if g > u else "uvicorn"
                    lines.append(
                        f"- uvicorn vs granian, {label}, {_PATH_NAMES[path]}: granian/uvicorn = {g / u:.2f} "
                        f"({g:,.0f} vs {u:,.0f} req/s) → {faster} is faster"
                    )
        return lines or ["- uvicorn vs granian: not measured"]

    def _push_lines(self) -> list[str]:
        lines = []
        for generation in (1, 2):
            push = self._find("delivery", target="memory", generation=generation, mode="push long-poll")
            poll = self._find("delivery", target="memory", generation=generation, mode="poll 1 s")
            poll_text = f"; 1 s polling p50 {poll['p50_ms']:.0f} ms" if poll and poll["available"] else ""
            if push is None:
                lines.append(f"- push delivery p50 < 10 ms, Gen-{generation}: not measured")
            elif not push["available"]:
                lines.append(
                    f"- push delivery p50 < 10 ms, Gen-{generation}: push not available on the server{poll_text} "
                    "— **NOT MET (not available)**"
                )
            else:
                ok = push["p50_ms"] < 10 and push["errors"] == 0
                lines.append(
                    f"- push delivery, Gen-{generation}: p50 {push['p50_ms']:.1f} ms{poll_text} (needed < 10 ms) — "
                    f"**{'MET' if ok else 'NOT MET'}**"
                )
        return lines
