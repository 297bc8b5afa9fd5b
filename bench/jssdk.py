"""``python -m bench jssdk``: matrix-js-sdk (Element Web's own MSC4108 code) through Synapse and through ours.

Three development stacks run side by side, differing only in who serves the Gen-1 rendezvous:

- ``synapse``: Synapse's own MSC4108 endpoint;
- ``ours-holds-off``: our server behind the stack's front proxy (the homeserver URL), ``hold_enabled = false``;
- ``ours-holds-on``: the same with held polls on (the default).

Two measurements, interleaved server by server so that a slow spell of the shared machine hits all three alike:

- **per-hop delivery**: two js-sdk ``MSC4108RendezvousSession`` objects (one Node driver each) ping-pong a
  payload; before each hop the reader is already receiving (polling once a second, as js-sdk does) and the
  writer waits 0.1-1.1 s; a sample is the time from the writer's ``send`` starting to the reader's ``receive``
  returning, so it includes the PUT, the driver pipes (about 1-2 ms) and js-sdk itself. 8 hops per session, as
  a login has, then a fresh pair. Every server is reached directly: the Synapse of the first stack, and two
  ``rendezvous serve`` processes with default settings, holds off and on (``--hops-via-front`` measures our
  servers' hops through the dev stacks' front proxy instead).
- **whole login**: js-sdk's ``MSC4108SignInWithQR`` as the new device against ``grant_login`` as the existing
  one, in both QR roles (``tests/interop/test_jssdk_signin.py``'s ``run_login``), on the dev stack with the
  device grant polled every second. ``grant_login`` polls once a second too (``TransportOptions(push=False)``),
  like Element X, so both devices are standard clients. A sample is the wall time of the login from the QR
  code's creation to the secrets read on the new device; the dev user is created before it. Each login is run
  twice per round (``--approval both``, the default):

  - *instant*: the verification page is answered the moment ``grant_login`` opens it, as a script would;
  - *person*: the page opens at once, and the user reads it for ``--consent-s`` seconds (uniform between the
    two values, one draw per round and role, the same for every server) before pressing the button. The sample
    is then the wall time minus that consent time: what the login costs besides the person.

  The two differ in how the device grant's token polling falls. The new device polls the token endpoint at
  once after ``m.login.protocol_accepted`` and then every ``interval`` (1 s). Answered instantly, the approval
  lands a few tens of ms after ``protocol_accepted`` is sent: a server that delivers that message at once has
  the new device's first poll miss it by those ms and wait the whole interval, while a server that delivers it
  half a second late has the approval in place for the first poll. With a person on the page the approval
  falls anywhere in an interval, and each server waits half of one on average.

Needs the Node peers (``make peers``) and Synapse (installed on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.stats import median, percentile

if TYPE_CHECKING:
    from devstack import DevStack

SERVERS = ("synapse", "ours-holds-off", "ours-holds-on")
HOPS_PER_SESSION = 8
ROLES = ("new-shows", "existing-shows")
APPROVALS = ("instant", "person")


@dataclass
class ServerResult:
    name: str
    hop_ms: list[float] = field(default_factory=list)
    #: Login seconds by approval (``instant`` / ``person``, the latter without the consent time) and QR role.
    login_s: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {approval: {role: [] for role in ROLES} for approval in APPROVALS}
    )
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "server": self.name,
            "hops": len(self.hop_ms),
            "hop_p50_ms": median(self.hop_ms),
            "hop_p99_ms": percentile(self.hop_ms, 0.99),
            "failures": len(self.failures),
        }
        for approval, by_role in self.login_s.items():
            logins = [s for samples in by_role.values() for s in samples]
            row[f"{approval}_logins"] = len(logins)
            row[f"{approval}_median_s"] = median(logins)
            for role, samples in by_role.items():
                row[f"{approval}_{role}_median_s"] = median(samples)
        return row


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench jssdk", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help=f"sessions of {HOPS_PER_SESSION} hops per server")
    parser.add_argument(
        "--logins", type=int, default=5, help="rounds of whole logins: per server, QR role and approval (default 5)"
    )
    parser.add_argument(
        "--approval",
        choices=(*APPROVALS, "both"),
        default="both",
        help="how the verification page is answered: at once (instant), after a person's consent time, or both",
    )
    parser.add_argument(
        "--consent-s",
        type=float,
        nargs=2,
        default=(2.0, 4.0),
        metavar=("MIN", "MAX"),
        help="seconds a person spends on the consent page, drawn uniformly per round and role (default 2 4)",
    )
    parser.add_argument(
        "--hops-via-front",
        action="store_true",
        help="measure our servers' hops through the dev stacks' front proxy instead of directly",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every sample as JSON")
    return parser


def _stacks(stack: ExitStack) -> dict[str, tuple[DevStack, str]]:
    """The three dev stacks and the Gen-1 create URL of each (where ``grant_login`` shows its code)."""
    from devstack import DevStack
    from rendezvous.protocol import GEN1_PATH

    stacks: dict[str, tuple[DevStack, str]] = {}
    for name in SERVERS:
        _progress(f"starting the {name} stack")
        if name == "synapse":
            dev = stack.enter_context(DevStack.start(poll_interval=1, rendezvous=False))
        else:
            env = {"RENDEZVOUS_HOLD_ENABLED": "true" if name == "ours-holds-on" else "false"}
            dev = stack.enter_context(DevStack.start(poll_interval=1, gen2_rendezvous="qrlink", rendezvous_env=env))
        stacks[name] = (dev, dev.homeserver_url.rstrip("/") + GEN1_PATH)
    return stacks


def _direct_servers(stack: ExitStack) -> dict[str, str]:
    """``rendezvous serve`` with its default settings, holds off and on: the Gen-1 create URL of each."""
    from rendezvous.protocol import GEN1_PATH
    from tests.support.server import serve_cli

    urls = {}
    for name, enabled in (("ours-holds-off", "false"), ("ours-holds-on", "true")):
        base = stack.enter_context(serve_cli({"RENDEZVOUS_HOLD_ENABLED": enabled}))
        urls[name] = base + GEN1_PATH
    return urls


def _hops(create_url: str, rng: random.Random) -> Iterator[float]:
    """One session of :data:`HOPS_PER_SESSION` ping-pong hops between two js-sdk devices: ms per hop."""
    from tests.peers.node import NodeDriver

    generator, scanner = NodeDriver("jssdk"), NodeDriver("jssdk")
    try:
        url = generator.call("create", fallback_rz_server=create_url)["url"]
        scanner.call("join", url=url)
        scanner.call("session_receive")  # the empty first payload; the scanner now holds the ETag
        writer, reader = scanner, generator
        for hop in range(HOPS_PER_SESSION):
            receiving = reader.submit("session_receive")
            time.sleep(rng.uniform(0.1, 1.1))
            started = time.monotonic()
            writer.call("session_send", data=f"hop {hop} " + "x" * 512)
            received = reader.wait(receiving, timeout=30)
            yield (time.monotonic() - started) * 1000
            if not str(received.get("data", "")).startswith(f"hop {hop} "):
                raise RuntimeError(f"hop {hop} delivered {received!r}")
            writer, reader = reader, writer
        generator.call("close")
    finally:
        generator.close()
        scanner.close()


async def _login(dev: DevStack, create_url: str, new_device_shows: bool, consent_s: float) -> float:
    """One whole login's wall time; ``consent_s``: the person's time on the consent page before answering it."""
    from devstack.users import create_e2ee_user
    from qrlink_client.transport import TransportOptions
    from tests.interop.test_jssdk_signin import ExistingDevice, Login, run_login
    from tests.peers.node import NodeDriver

    driver = NodeDriver("jssdk")
    try:
        existing = ExistingDevice(await create_e2ee_user(dev, prefix="bench", device_id="EXISTING"))
        existing.page.think_s = consent_s
        started = time.monotonic()
        outcome = await run_login(
            dev,
            driver,
            new_device_shows=new_device_shows,
            gen1_create_url=create_url,
            existing=existing,
            transport_options=TransportOptions(push=False),
        )
        elapsed = time.monotonic() - started
    finally:
        driver.close()
    if not isinstance(outcome, Login):
        raise RuntimeError(f"login failed: js-sdk {outcome[0]!r}, grant_login {outcome[1]!r}")
    return elapsed


def _render(results: dict[str, ServerResult], elapsed_s: float) -> str:
    rows = [result.summary() for result in results.values()]
    lines = [
        "| server | hops | hop p50 ms | hop p99 ms | approval | logins | login median s | new device shows s | "
        "existing shows s | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shown = [approval for approval in APPROVALS if row[f"{approval}_logins"]] or [APPROVALS[0]]
        for approval in shown:
            lines.append(
                f"| {row['server']} | {row['hops']} | {row['hop_p50_ms']:.1f} | {row['hop_p99_ms']:.1f} | "
                f"{approval} | {row[f'{approval}_logins']} | {row[f'{approval}_median_s']:.2f} | "
                f"{row[f'{approval}_new-shows_median_s']:.2f} | {row[f'{approval}_existing-shows_median_s']:.2f} | "
                f"{row['failures']} |"
            )
    base = results["synapse"].summary()
    for name in ("ours-holds-off", "ours-holds-on"):
        row = results[name].summary()
        lines.append("")
        lines.append(f"- {name} vs synapse: hop p50 {row['hop_p50_ms']:.1f} vs {base['hop_p50_ms']:.1f} ms")
        for approval in APPROVALS:
            if not row[f"{approval}_logins"]:
                continue
            ours, theirs = row[f"{approval}_median_s"], base[f"{approval}_median_s"]
            faster = ", ".join(
                f"{role} {base[f'{approval}_{role}_median_s'] - row[f'{approval}_{role}_median_s']:+.2f}"
                for role in ROLES
            )
            lines.append(
                f"  - whole login, {approval} approval: {ours:.2f} vs {theirs:.2f} s ({theirs - ours:+.2f} s faster; "
                f"by role: {faster})"
            )
    lines.append(f"\n({elapsed_s:.0f} s)")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    rng = random.Random(4108)
    results = {name: ServerResult(name) for name in SERVERS}
    started = time.monotonic()
    with ExitStack() as stack:
        stacks = _stacks(stack)
        hop_urls = {name: create_url for name, (_, create_url) in stacks.items()}
        if not args.hops_via_front:
            hop_urls.update(_direct_servers(stack))
        for session in range(args.sessions):
            for name in SERVERS:
                create_url = hop_urls[name]
                try:
                    results[name].hop_ms.extend(_hops(create_url, rng))
                except Exception as exc:  # one broken session is reported, the run goes on
                    results[name].failures.append(f"hops: {exc!r}")
                _progress(f"{name} session {session + 1}: hop p50 so far {median(results[name].hop_ms):.1f} ms")
        approvals = APPROVALS if args.approval == "both" else (args.approval,)
        low, high = sorted(args.consent_s)
        for round_ in range(args.logins):
            for role in ROLES:
                for approval in approvals:
                    # One consent time per round and role, the same for every server.
                    consent_s = rng.uniform(low, high) if approval == "person" else 0.0
                    for name in SERVERS:
                        dev, create_url = stacks[name]
                        label = f"{role} ({approval} approval)"
                        try:
                            seconds = asyncio.run(_login(dev, create_url, role == "new-shows", consent_s))
                        except Exception as exc:
                            results[name].failures.append(f"login {label}: {exc!r}")
                            _progress(f"{name} login {label} failed: {exc!r}")
                            continue
                        results[name].login_s[approval][role].append(seconds - consent_s)
                        _progress(
                            f"{name} login {label} round {round_ + 1}: {seconds:.2f} s"
                            + (
                                f" ({seconds - consent_s:.2f} s besides {consent_s:.2f} s of consent)"
                                if consent_s
                                else ""
                            )
                        )
    elapsed = time.monotonic() - started
    print(_render(results, elapsed))
    if args.json is not None:
        args.json.write_text(json.dumps({name: asdict(r) for name, r in results.items()}, indent=2))
    return 0
