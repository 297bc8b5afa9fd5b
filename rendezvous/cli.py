"""``rendezvous serve``: validate the settings, then run uvicorn (or granian) with one app per worker.

``rendezvous selftest URL`` checks a deployment from the outside (see :mod:`rendezvous.selftest`); it reads no
server settings.

Settings come from flags, ``RENDEZVOUS_*`` variables and the ``--config`` TOML file (see
:mod:`rendezvous.config`).
They are validated here, once, and handed to every worker through the environment as JSON, so each worker
process (uvicorn imports :func:`rendezvous.app.app_from_environment` in each) builds exactly the app that was
checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import CONFIG_FILE_ENV, DEFAULT_PORT, ConfigError, Settings, load_settings, unknown_variable_warnings
from .store.factory import open_store

APP_FACTORY = "rendezvous.app:app_from_environment"
#: uvicorn's httptools protocol with our connection limits (see :mod:`rendezvous.connections`).
HTTP_PROTOCOL = "rendezvous.connections:GuardedProtocol"
#: After SIGTERM, requests still running this long after the parked ones were answered are cancelled.
GRACEFUL_SHUTDOWN_S = 10
#: Where ``rendezvous selftest`` reads an access token from, so that it stays off the command line.
SELFTEST_TOKEN_ENV = "RENDEZVOUS_SELFTEST_ACCESS_TOKEN"  # noqa: S105 (a variable name, not a secret)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rendezvous", description="Matrix sign-in-with-QR rendezvous server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The setting flags, shared by serve and check-config: check-config validates what serve would run.
    serve = argparse.ArgumentParser(add_help=False)
    serve.add_argument("--config", metavar="FILE", help="TOML config file (default: $RENDEZVOUS_CONFIG)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--workers", type=int, help="worker processes; >1 needs a Redis store (default 1)")
    serve.add_argument(
        "--server", choices=["uvicorn", "granian"], help="HTTP server: uvicorn (default) or granian (an extra)"
    )
    serve.add_argument("--public-base-url", help="URL clients reach this server at, for Gen-1 session URLs")
    serve.add_argument("--store", dest="store_url", metavar="URL", help="memory:// (default) or redis://…")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])

    commands.add_parser("serve", parents=[serve], help="run the server", description="Run the rendezvous server.")
    check = commands.add_parser(
        "check-config",
        parents=[serve],
        help="validate the settings and exit",
        description="Validate the settings serve would run with (same options) and exit.",
    )
    check.add_argument(
        "--show", action="store_true", help="print every effective value and where it came from (secrets hidden)"
    )
    _add_selftest_parser(commands)
    return parser


def _add_selftest_parser(commands: Any) -> None:
    from .selftest.options import DEFAULT_HOLD_WAIT_S, DEFAULT_ORIGIN, DEFAULT_REPEAT, DEFAULT_TIMEOUT_S

    selftest = commands.add_parser(
        "selftest",
        help="check a deployed rendezvous end to end",
        description=(
            "Run the Gen-1 and Gen-2 rendezvous protocols through a deployed URL, as browsers and Element's "
            "clients do, and report each check. Exits 1 if any check fails."
        ),
    )
    selftest.add_argument("url", help="homeserver client base URL (or the rendezvous server's own URL)")
    selftest.add_argument(
        "--gen1-create-url", metavar="URL", help="where to POST the Gen-1 create (default: under URL)"
    )
    selftest.add_argument("--skip-gen1", action="store_true", help="skip the Gen-1 (MSC4108) checks")
    selftest.add_argument("--skip-gen2", action="store_true", help="skip the Gen-2 (MSC4388) checks")
    selftest.add_argument(
        "--gen2-stable", action="store_true", help="test Gen-2 on /_matrix/client/v1/rendezvous (not unstable)"
    )
    selftest.add_argument(
        "--origin", default=DEFAULT_ORIGIN, help=f"browser origin for the CORS checks (default {DEFAULT_ORIGIN})"
    )
    selftest.add_argument(
        "--repeat",
        type=_positive_int,
        default=DEFAULT_REPEAT,
        help=f"GETs per session in the load-balancer check (default {DEFAULT_REPEAT})",
    )
    selftest.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"per-request timeout (default {DEFAULT_TIMEOUT_S:g})",
    )
    selftest.add_argument(
        "--hold-wait",
        type=_non_negative_float,
        default=DEFAULT_HOLD_WAIT_S,
        metavar="SECONDS",
        help=f"how long gen1.held_poll leaves a held poll waiting before a write answers it; keep it just under "
        f"the server's hold_ms (default {DEFAULT_HOLD_WAIT_S:g}; 0 skips the check)",
    )
    selftest.add_argument(
        "--access-token",
        default=os.environ.get(SELFTEST_TOKEN_ENV),
        help=f"token for Gen-2 create when it needs a logged-in user (default ${SELFTEST_TOKEN_ENV})",
    )
    selftest.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="also send requests to this origin (a delegated rendezvous server); repeatable. By default only the "
        "origins of URL and --gen1-create-url are visited, wherever the tested server points",
    )
    selftest.add_argument("--json", action="store_true", help="print the report as JSON (progress on stderr)")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _selftest(args: argparse.Namespace) -> int:
    import asyncio

    from .selftest import (
        SelfTestOptions,
        format_result,
        format_summary,
        normalise_base_url,
        report_json,
        run_selftest,
    )

    options = SelfTestOptions(
        base_url=normalise_base_url(args.url),
        gen1_create_url=args.gen1_create_url,
        gen1=not args.skip_gen1,
        gen2=not args.skip_gen2,
        gen2_stable=args.gen2_stable,
        origin=args.origin,
        repeat=args.repeat,
        timeout_s=args.timeout,
        access_token=args.access_token or None,
        allowed_origins=tuple(args.allow_origin),
        hold_wait_s=args.hold_wait,
    )
    # With --json, stdout carries only the report; progress goes to stderr.
    progress = sys.stderr if args.json else sys.stdout
    print(f"rendezvous selftest {options.base_url}", file=progress, flush=True)
    report = asyncio.run(
        run_selftest(options, on_result=lambda result: print(format_result(result), file=progress, flush=True))
    )
    print(format_summary(report), file=progress, flush=True)
    if args.json:
        print(report_json(report))
    return report.exit_status


#: The settings that have a command-line flag, and the flag.
SETTING_FLAGS: dict[str, str] = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "server": "--server",
    "public_base_url": "--public-base-url",
    "store_url": "--store",
    "log_level": "--log-level",
}


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    settings = load_settings(args.config, **overrides)
    if settings.server == "granian" and importlib.util.find_spec("granian") is None:
        raise ConfigError("server: granian is not installed; install the 'server-granian' extra")
    # Building the store catches what settings alone cannot (a Redis URL it cannot parse, a missing extra)
    # before any worker starts. Nothing connects yet.
    open_store(settings.store_url)
    return settings


def _show(args: argparse.Namespace, settings: Settings) -> None:
    from .describe import setting_sources, settings_report

    flags = {name: flag for name, flag in SETTING_FLAGS.items() if getattr(args, name, None) is not None}
    config_file = args.config or os.environ.get(CONFIG_FILE_ENV) or None
    if config_file is not None:
        origin = "--config" if args.config else CONFIG_FILE_ENV
        print(f"config file: {config_file} (from {origin})")
    else:
        print(f"config file: none (set --config or {CONFIG_FILE_ENV})")
    sources = setting_sources(config_file=config_file, environ=os.environ, flags=flags)
    for line in settings_report(settings, sources):
        print(line)


def _serve(settings: Settings, warnings: Sequence[str]) -> None:
    from .app import WORKER_SETTINGS_ENV
    from .describe import startup_fields, startup_message
    from .logs import configure_logging

    configure_logging(settings)
    logger = logging.getLogger("rendezvous")
    for warning in warnings:
        logger.warning(warning)
    logger.info(startup_message(), extra={"fields": startup_fields(settings)})
    os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json()
    if settings.server == "granian":
        _serve_granian(settings)
    else:
        _serve_uvicorn(settings)


def _serve_uvicorn(settings: Settings) -> None:
    import uvicorn

    from .connections import raise_fd_limit
    from .logs import uvicorn_log_config

    raise_fd_limit(settings.max_connections)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        log_config=uvicorn_log_config(settings),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        http=HTTP_PROTOCOL,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        # Client addresses and public URLs come from our own trusted-proxy handling (rendezvous.proxy);
        # uvicorn's would rewrite the client address before we see the socket peer.
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )


#: granian's listen backlog. Its own default (1024) drops SYNs when a thousand devices connect within a second;
#: this is uvicorn's default.
GRANIAN_BACKLOG = 2048


def _serve_granian(settings: Settings) -> None:
    """The same app factory under granian: its Rust HTTP/1 server, an asyncio worker loop on uvloop."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        APP_FACTORY,
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        # HTTP/1 only, as with uvicorn: the rendezvous clients speak it, and a proxy in front may offer HTTP/2.
        http=HTTPModes.http1,
        backlog=GRANIAN_BACKLOG,
        # Its own header deadline and size limit (431); the body deadline is the app's (Request.read_body).
        # backpressure bounds requests in flight, not connections: past it, connections wait unserved.
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.request_header_timeout_seconds * 1000),
            max_buffer_size=settings.max_request_header_bytes,
        ),
        backpressure=settings.max_connections,
        log_level=LogLevels(settings.log_level),
        log_access=settings.access_log,
    ).serve()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rendezvous`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "selftest":
        return _selftest(args)
    warnings = unknown_variable_warnings()
    try:
        settings = _settings(args)
    except ConfigError as exc:
        for warning in warnings:
            print(f"rendezvous: warning: {warning}", file=sys.stderr)
        print("rendezvous: invalid configuration:", file=sys.stderr)
        for line in str(exc).splitlines():
            print(f"  {line}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        for warning in warnings:
            print(f"rendezvous: warning: {warning}", file=sys.stderr)
        if args.show:
            _show(args, settings)
        print("configuration OK")
        return 0
    _serve(settings, warnings)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
