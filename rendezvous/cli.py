"""``rendezvous serve``: validate the settings, then run uvicorn with one app per worker.

Settings come from flags, ``RENDEZVOUS_*`` variables and the ``--config`` TOML file (see
:mod:`rendezvous.config`).
They are validated here, once, and handed to every worker through the environment as JSON, so each worker
process (uvicorn imports :func:`rendezvous.app.app_from_environment` in each) builds exactly the app that was
checked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, Settings, load_settings
from .store.factory import open_store

APP_FACTORY = "rendezvous.app:app_from_environment"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rendezvous", description="Matrix sign-in-with-QR rendezvous server."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server", description="Run the rendezvous server.")
    serve.add_argument("--config", metavar="FILE", help="TOML config file (default: $RENDEZVOUS_CONFIG)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes; >1 needs a Redis store (default 1)")
    serve.add_argument("--public-base-url", help="URL clients reach this server at, for Gen-1 session URLs")
    serve.add_argument("--store", dest="store_url", metavar="URL", help="memory:// (default) or redis://…")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])

    check = commands.add_parser(
        "check-config", help="validate the settings and exit", description="Validate the settings and exit."
    )
    check.add_argument("--config", metavar="FILE", help="TOML config file (default: $RENDEZVOUS_CONFIG)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name, None)
        for name in ("host", "port", "workers", "public_base_url", "store_url", "log_level")
    }
    settings = load_settings(args.config, **overrides)
    # Building the store catches what settings alone cannot (a Redis URL it cannot parse, a missing extra)
    # before any worker starts. Nothing connects yet.
    open_store(settings.store_url)
    return settings


def _serve(settings: Settings) -> None:
    import uvicorn

    from .app import WORKER_SETTINGS_ENV

    os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        # Client addresses and public URLs come from our own trusted-proxy handling (rendezvous.proxy);
        # uvicorn's would rewrite the client address before we see the socket peer.
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rendezvous`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print("rendezvous: invalid configuration:", file=sys.stderr)
        for line in str(exc).splitlines():
            print(f"  {line}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print("configuration OK")
        return 0
    _serve(settings)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
