"""``python -m bench demo-login``: end-to-end time of ``qrlink demo --auto``'s login, interval polling vs push.

One development stack (OAuth server, Synapse, our rendezvous server) is started once; then the demo's own login
(:func:`devstack.handover.run_handover`, roles ``new-shows``) runs N times per case, with ``--push`` and with
``--no-push``, interleaved so that drift on a shared machine hits every case alike. The time of one login is
the demo's ``elapsed_ms``: from the start of both devices to the end of the new device's checks on Synapse
(``/keys/query`` cross-signing chain, ``/room_keys/version`` backup key). The stack start and the creation of
each login's fresh demo user are outside it.

Cases:

- ``gen1``: MSC4108 through our rendezvous server, as ``qrlink demo --gen 1`` runs it.
- ``gen2-synapse``: MSC4388 with the session on Synapse, as ``qrlink demo --gen 2`` runs it. Synapse does not
  advertise the push extension, so ``--push`` falls back to interval polling: both rows measure the same thing.
- ``gen2-ours``: MSC4388 with the session on our rendezvous server, as ``qrlink demo --gen 2 --gen2-rendezvous
  qrlink`` runs it: a second dev stack whose homeserver URL is a front proxy with our rendezvous server under it.
  This is the Gen-2 comparison that means something.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.stats import median, percentile

if TYPE_CHECKING:
    from devstack import DevStack

CASES = ("gen1", "gen2-synapse", "gen2-ours")
#: The RFC 8628 ``interval`` the demo hands its devices (``run_demo`` starts its stack with it).
DEMO_DEVICE_GRANT_INTERVAL_S = 1


@dataclass(frozen=True)
class Case:
    """One generation on one rendezvous server."""

    name: str
    generation: int
    rendezvous: str  # "ours" or "synapse"


@dataclass
class CaseResult:
    """The logins of one case with one delivery mode, in milliseconds."""

    case: str
    generation: int
    rendezvous: str
    push_requested: bool
    push_advertised: bool
    samples_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def delivery(self) -> str:
        """What the devices actually used: push only when asked for and offered."""
        return "push" if self.push_requested and self.push_advertised else "interval polling (1 s)"

    def stats(self) -> dict[str, float]:
        return {
            "median_ms": median(self.samples_ms),
            "p10_ms": percentile(self.samples_ms, 0.10),
            "p90_ms": percentile(self.samples_ms, 0.90),
        }


_CASES = {
    "gen1": Case("gen1", 1, "ours"),
    "gen2-synapse": Case("gen2-synapse", 2, "synapse"),
    "gen2-ours": Case("gen2-ours", 2, "ours"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench demo-login",
        description=(
            "End-to-end time of `qrlink demo --auto`'s login on one dev stack, interval polling vs push, "
            "median of N per case."
        ),
    )
    parser.add_argument("--runs", type=int, default=10, help="logins per case and delivery mode (default 10)")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=list(CASES),
        metavar="CASE",
        help=f"default all: {', '.join(CASES)}",
    )
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded logins before the measured ones (default 1)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every sample as JSON")
    return parser


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _one_login(stack: DevStack, case: Case, push: bool) -> tuple[float | None, str]:
    """Run the demo's ``--auto`` login once; its ``elapsed_ms`` (None when it failed) and its progress lines."""
    from devstack.handover import NEW_SHOWS, DemoDevice, run_handover

    log = io.StringIO()

    def say(label: str) -> Callable[[str], None]:
        return lambda text: print(f"{label} {text}", file=log)

    def device(label: str) -> DemoDevice:
        # The step names are enough to see where a failed login stopped; 60 logins' progress goes to the log.
        return DemoDevice(say=say(label), on_progress=lambda step: say(label)(type(step).__name__))

    generation: Literal[1, 2] = 1 if case.generation == 1 else 2
    try:
        summary = asyncio.run(
            run_handover(
                stack,
                generation=generation,
                roles=NEW_SHOWS,
                push=push,
                auto=True,
                say=say("[demo]"),
                desktop=device("[desktop]"),
                phone=device("[phone]"),
            )
        )
    except Exception as exc:  # a failed login is counted and shown, the others still run
        return None, f"{log.getvalue()}{type(exc).__name__}: {exc}\n"
    checks = (summary["cross_signed"], summary["backup_key_verified"], summary["history_decrypted"])
    if summary["error"] is not None or not all(checks):
        return None, log.getvalue() + json.dumps(summary) + "\n"
    return float(summary["elapsed_ms"]), log.getvalue()


def _push_advertised(stack: DevStack) -> dict[str, bool]:
    """Whether each rendezvous server offers push: our server (Gen-1 and Gen-2) and Synapse (Gen-2)."""
    import httpx

    from qrlink_client.discovery import discover_gen2

    async def main() -> dict[str, bool]:
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
            found = {"synapse": (await discover_gen2(http, stack.homeserver_url)).push is not None}
            if stack.rendezvous_url is not None:
                found["ours"] = (await discover_gen2(http, stack.rendezvous_url)).push is not None
            return found

    return asyncio.run(main())


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def render(results: list[CaseResult], machine: dict[str, Any]) -> str:
    """The results as Markdown: one row per case and delivery mode, then push/poll per case."""
    out = [
        f"- date: {machine['date']}; command: `{machine['command']}`; took {machine['elapsed_s']} s "
        f"(stack start {machine['stack_start_s']} s)",
        f"- {machine['nproc']} cores, Python {machine['python']}; {machine['runs']} logins per row, "
        f"{machine['warmup']} unrecorded warm-up",
        "",
        "| case | gen | session on | --push | delivery used | logins | median ms | p10 ms | p90 ms | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.stats()
        out.append(
            f"| {r.case} | {r.generation} | {'our server' if r.rendezvous == 'ours' else 'Synapse'} | "
            f"{'yes' if r.push_requested else 'no'} | {r.delivery} | {len(r.samples_ms)} | {_ms(s['median_ms'])} | "
            f"{_ms(s['p10_ms'])} | {_ms(s['p90_ms'])} | {len(r.failures)} |"
        )
    out += ["", "| case | push / poll (medians) | difference ms |", "|---|---|---|"]
    for name in dict.fromkeys(r.case for r in results):
        poll = next((r for r in results if r.case == name and not r.push_requested), None)
        push = next((r for r in results if r.case == name and r.push_requested), None)
        if poll is None or push is None:
            continue
        a, b = poll.stats()["median_ms"], push.stats()["median_ms"]
        ratio = "-" if a != a or b != b or a == 0 else f"{b / a:.2f}"
        note = "" if push.push_advertised else " (no push offered: both rows poll)"
        out.append(f"| {name} | {ratio}{note} | {_ms(b - a)} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from devstack import DevStack
    except ImportError:
        print("the demo-login bench needs the development stack: install qrlink[devstack,e2ee]", file=sys.stderr)
        return 2
    import os
    import platform

    cases = [_CASES[name] for name in args.cases]
    began = time.monotonic()
    _progress("starting the development stack (OAuth server, Synapse, rendezvous server)")
    with contextlib.ExitStack() as running:
        stack = running.enter_context(DevStack.start(poll_interval=DEMO_DEVICE_GRANT_INTERVAL_S, rendezvous=True))
        # Gen-2 through our server: a second stack whose homeserver URL is a front proxy with our rendezvous server
        # under it (`qrlink demo --gen2-rendezvous qrlink`), the shape an admin deploys.
        front = None
        if any(case.rendezvous == "ours" and case.generation == 2 for case in cases):
            front = running.enter_context(
                DevStack.start(poll_interval=DEMO_DEVICE_GRANT_INTERVAL_S, gen2_rendezvous="qrlink")
            )
        stack_start = time.monotonic() - began
        _progress(f"stack{'s' if front else ''} up in {stack_start:.1f}s")
        advertised = _push_advertised(stack)
        _progress(f"push advertised: {advertised}")

        def stack_for(case: Case) -> DevStack:
            return front if front is not None and case.rendezvous == "ours" and case.generation == 2 else stack

        results = [
            CaseResult(case.name, case.generation, case.rendezvous, push, advertised.get(case.rendezvous, False))
            for case in cases
            for push in (False, True)
        ]
        for _ in range(args.warmup):
            _one_login(stack_for(cases[0]), cases[0], push=False)
        # Interleaved: round i runs every case and mode once, so slow spells of the machine spread over all rows.
        for round_ in range(args.runs):
            for result in results:
                case = _CASES[result.case]
                elapsed, log = _one_login(stack_for(case), case, result.push_requested)
                mode = "push" if result.push_requested else "poll"
                if elapsed is None:
                    result.failures.append(log)
                    _progress(f"  round {round_ + 1} {result.case} {mode}: FAILED\n{log}")
                else:
                    result.samples_ms.append(elapsed)
                    _progress(f"  round {round_ + 1} {result.case} {mode}: {elapsed:.0f} ms")
        _progress("stopping the development stack")
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join(["python -m bench demo-login", *(sys.argv[2:] if argv is None else argv)]),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "runs": args.runs,
        "warmup": args.warmup,
        "stack_start_s": round(stack_start, 1),
        "elapsed_s": round(time.monotonic() - began),
        "push_advertised": advertised,
    }
    print(render(results, machine))
    if args.json is not None:
        rows = [asdict(r) | r.stats() | {"delivery": r.delivery} for r in results]
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0 if all(not r.failures for r in results) else 1
