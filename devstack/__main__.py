"""``python -m devstack``: run the development stack, or manage users of a running one.

python -m devstack up --user alice:wonderland        # start everything; Ctrl-C stops it
python -m devstack create-user bob builder           # DEV ONLY, against the running stack
python -m devstack login-device alice PHONE          # DEV ONLY: tokens for an "existing device"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from devstack._process import StartupError
from devstack.stack import DevStack
from devstack.synapse import cache_dir
from qrlink_client.discovery import gen1_create_url


def default_state_file() -> Path:
    """Where ``up`` writes the URLs and admin token of the running stack (readable by its owner only)."""
    return cache_dir() / "devstack-state.json"


def _user(value: str) -> tuple[str, str]:
    localpart, sep, password = value.partition(":")
    if not sep or not localpart or not password:
        raise argparse.ArgumentTypeError("expected LOCALPART:PASSWORD")
    return localpart, password


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description="Run the development stack, or manage users of a running one."
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="where 'up' records URLs and the admin token (default: devstack-state.json in the qrlink cache)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start OAuth server, Synapse and rendezvous; Ctrl-C stops them")
    up.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="LOCALPART:PASSWORD",
        help="create this dev user at start (repeatable)",
    )
    up.add_argument("--poll-interval", type=int, default=5, help="RFC 8628 interval in seconds (default 5)")
    up.add_argument("--device-code-lifetime", type=int, default=1200, help="seconds (default 1200)")
    up.add_argument("--access-token-lifetime", type=int, default=3600, help="seconds (default 3600)")
    up.add_argument("--no-rendezvous", action="store_true", help="do not start the rendezvous server")
    up.add_argument(
        "--gen2-rendezvous",
        choices=("synapse", "qrlink"),
        default="synapse",
        help="who hosts Gen-2 (MSC4388) sessions: Synapse's own endpoint (default), or our rendezvous server "
        "behind a front proxy that then serves as the homeserver URL",
    )

    create = commands.add_parser("create-user", help="DEV ONLY: create or reset a user on the running stack")
    create.add_argument("localpart")
    create.add_argument("password")

    login = commands.add_parser("login-device", help="DEV ONLY: sign a user in as a device, print its tokens")
    login.add_argument("localpart")
    login.add_argument("device_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_file: Path = args.state_file or default_state_file()
    try:
        if args.command == "up":
            return _up(args, state_file)
        if args.command == "create-user":
            body = {"localpart": args.localpart, "password": args.password}
            print(json.dumps(_admin(state_file, "users", body)))
            return 0
        body = {"localpart": args.localpart, "device_id": args.device_id}
        print(json.dumps(_admin(state_file, "sessions", body), indent=2))
        return 0
    except (StartupError, DevStackCliError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1


class DevStackCliError(RuntimeError):
    """A CLI command could not reach or use the running stack."""


def _up(args: argparse.Namespace, state_file: Path) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop):
        stack = DevStack.start(
            rendezvous=False if args.no_rendezvous else None,
            poll_interval=args.poll_interval,
            device_code_lifetime=args.device_code_lifetime,
            access_token_lifetime=args.access_token_lifetime,
            users=dict(args.user),
            gen2_rendezvous=args.gen2_rendezvous,
        )
        print("devstack: starting (the first run installs Synapse, ~1-2 min) …", flush=True)
        with stack, _state_file(state_file, stack):
            _print_urls(stack, [localpart for localpart, _ in args.user], state_file)
            while not stop.wait(0.5):
                pass
            print("devstack: stopping …", flush=True)
    print("devstack: stopped", flush=True)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _state_file(path: Path, stack: DevStack) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(stack_state(stack), handle, indent=2)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def stack_state(stack: DevStack) -> dict[str, Any]:
    """What ``up`` writes to the state file: the URLs a client needs, the server name and the admin token.

    ``rendezvous_url`` is our rendezvous server's base URL and ``gen1_rendezvous_create_url`` its MSC4108 create
    URL (both ``null`` with ``--no-rendezvous``); the examples in ``examples/`` take their defaults from here.
    """
    rendezvous = stack.rendezvous_url
    return {
        "homeserver_url": stack.homeserver_url,
        "server_name": stack.server_name,
        "issuer": stack.issuer,
        "rendezvous_url": rendezvous,
        "gen1_rendezvous_create_url": gen1_create_url(rendezvous) if rendezvous else None,
        "admin_token": stack.admin_token,
    }


def _print_urls(stack: DevStack, users: list[str], state_file: Path) -> None:
    rows = [
        ("homeserver", f"{stack.homeserver_url}  (server name {stack.server_name})"),
        *([("Synapse", stack.synapse_url)] if stack.synapse_url != stack.homeserver_url else []),
        ("OAuth issuer", stack.issuer),
        ("verification", f"{stack.issuer}link"),
        ("account", f"{stack.issuer}account"),
        ("rendezvous", stack.rendezvous_url or "not started"),
        ("users", ", ".join(f"@{u}:{stack.server_name}" for u in users) or "none (see create-user)"),
        ("admin API", f"{stack.issuer}_devstack/admin/  (DEV ONLY; token in {state_file})"),
    ]
    print("devstack: up; Ctrl-C stops everything")
    for name, value in rows:
        print(f"  {name:<13} {value}")
    sys.stdout.flush()


def _admin(state_file: Path, endpoint: str, body: dict[str, Any]) -> Any:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as error:
        raise DevStackCliError(f"no running stack ({state_file}: {error}); start one with 'up'") from None
    try:
        response = httpx.post(
            f"{state['issuer']}_devstack/admin/{endpoint}",
            json=body,
            headers={"Authorization": f"Bearer {state['admin_token']}"},
            timeout=30.0,
            trust_env=False,
        )
    except httpx.HTTPError as error:
        raise DevStackCliError(f"the stack at {state['issuer']} did not answer: {error}") from None
    if response.status_code != 200:
        raise DevStackCliError(f"{endpoint} failed ({response.status_code}): {response.text}")
    return response.json()


if __name__ == "__main__":
    sys.exit(main())
