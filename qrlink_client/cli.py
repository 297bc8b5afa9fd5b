"""The ``qrlink`` command line.

Each subcommand is a :class:`Command`: a name, a help line, a function that adds its arguments and a function
that runs it and returns the exit status. Adding a subcommand means writing one more and listing it in
:data:`COMMANDS`; subcommands with their own subcommands (``qrlink qr decode``) nest the same way.

Exit status: 0 on success; 1 when the library reports an error, printed as
``qrlink: <ErrorClass>: <message>``; 2 for usage errors (argparse's convention).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from ._b64 import b64decode
from .errors import QrLinkError

__all__ = ["COMMANDS", "Command", "UnrecognisedInput", "build_parser", "main", "read_qr_input"]

EXIT_OK = 0
EXIT_ERROR = 1


class UnrecognisedInput(QrLinkError):
    """A QR argument is neither an existing image file, nor hex, nor standard base64."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` executes it and returns the exit status.

    A command with ``children`` is a group (``qrlink qr``): it takes no action of its own and dispatches to
    one of them.
    """

    name: str
    help: str
    description: str = ""
    configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    run: Callable[[argparse.Namespace], int] | None = None
    children: Sequence[Command] = field(default_factory=tuple)


# --- qrlink peer --------------------------------------------------------------------------------------------


def _run_peer(args: argparse.Namespace) -> int:
    from .peer import serve

    return serve()


PEER = Command(
    name="peer",
    help="run the JSON-lines interop peer on stdin/stdout",
    description=(
        "Read one JSON request per line on stdin and write one JSON response per line on stdout, in order, "
        "until end of input. Operations cover the QR codec (qr_decode, qr_encode), the secure channels "
        "(channel_new, initiate, accept_initiate, ok_message, accept_ok, check_code, encrypt, decrypt) and a "
        "whole handshake over a real rendezvous server (handshake_start, handshake_wait, ...). "
        'Send {"op": "hello"} for the list; docs/peer.md describes every field.'
    ),
    run=_run_peer,
)


# --- qrlink qr ----------------------------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def read_qr_input(value: str) -> bytes:
    """QR payload bytes from an image file path, hex, or standard base64 (tried in that order)."""
    path = Path(value)
    if path.is_file():
        from .qr_image import read_qr_image

        return read_qr_image(path)
    compact = "".join(value.split())
    if _HEX.fullmatch(compact):
        return bytes.fromhex(compact)
    try:
        data = b64decode(compact)
    except QrLinkError:
        raise UnrecognisedInput("input is not an image file, hex or standard base64") from None
    if not data:
        raise UnrecognisedInput("input is empty")
    return data


def _configure_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the payload as hex or base64, or an image file holding the QR code")
    parser.add_argument("--json", action="store_true", help="print the fields as one JSON object")


def _run_decode(args: argparse.Namespace) -> int:
    import json

    from .peer import qr_to_fields
    from .qr import decode_qr

    data = read_qr_input(args.input)
    fields = qr_to_fields(decode_qr(data))
    fields["hex"] = data.hex()
    if args.json:
        print(json.dumps(fields))
    else:
        width = max(map(len, fields))
        for name, value in fields.items():
            print(f"{name:<{width}}  {'-' if value is None else value}")
    return EXIT_OK


def _configure_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hex", help="the payload bytes as hex")
    parser.add_argument("--png", metavar="FILE", type=Path, help="write a PNG image to FILE")
    parser.add_argument("--svg", metavar="FILE", type=Path, help="write an SVG image to FILE")
    parser.add_argument(
        "--terminal",
        action="store_true",
        help="print the code with Unicode half blocks (the default when no file is given)",
    )
    parser.add_argument("--scale", type=int, default=8, help="pixels per module in PNG/SVG (default 8)")


def _run_render(args: argparse.Namespace) -> int:
    from .qr_render import render_png, render_svg, render_terminal

    compact = "".join(args.hex.split())
    if not _HEX.fullmatch(compact):
        raise UnrecognisedInput("the payload must be hex with an even number of digits")
    data = bytes.fromhex(compact)
    if args.scale < 1:
        raise UnrecognisedInput("--scale must be at least 1")
    if args.png is not None:
        args.png.write_bytes(render_png(data, scale=args.scale))
    if args.svg is not None:
        args.svg.write_text(render_svg(data, scale=args.scale), encoding="utf-8")
    if args.terminal or (args.png is None and args.svg is None):
        sys.stdout.write(render_terminal(data))
    return EXIT_OK


QR = Command(
    name="qr",
    help="decode or render sign-in QR codes",
    description="Utilities for the binary QR payload of Matrix sign in with QR code (MSC4108 and MSC4388).",
    children=(
        Command(
            name="decode",
            help="print the fields of a QR payload",
            description=(
                "Decode a QR payload given as hex, as standard base64, or as an image file (PNG, JPEG, ...; "
                "needs the qr-image extra) and print its fields."
            ),
            configure=_configure_decode,
            run=_run_decode,
        ),
        Command(
            name="render",
            help="draw a QR payload as PNG, SVG or terminal text",
            description="Render payload bytes as a QR code: byte mode, error correction level Q.",
            configure=_configure_render,
            run=_run_render,
        ),
    ),
)

COMMANDS: tuple[Command, ...] = (PEER, QR)
"""The top-level subcommands, in ``--help`` order."""


# --- parser and entry point ---------------------------------------------------------------------------------


def _add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], dest: str) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.configure(sub)
        if command.children:
            _add_commands(sub, command.children, dest=f"{dest}_{command.name}")
        else:
            sub.set_defaults(_run=command.run)


def build_parser() -> argparse.ArgumentParser:
    """The full ``qrlink`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="qrlink",
        description="Matrix sign in with QR code (MSC4108 / MSC4388): client tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_commands(parser, COMMANDS, dest="command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``qrlink`` with ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._run
    try:
        return run(args)
    except QrLinkError as exc:
        print(f"qrlink: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"qrlink: {exc.strerror or type(exc).__name__}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_ERROR
