"""``qrlink qr decode`` and ``qrlink qr render``: the QR payload utilities.

The QR libraries are imported when a command runs, so ``qrlink --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command import EXIT_OK, Command
from .qr_input import UnrecognisedInput, parse_hex, read_qr_input

__all__ = ["QR"]


def _configure_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the payload as hex or base64, or an image file holding the QR code")
    parser.add_argument("--json", action="store_true", help="print the fields as one JSON object")


def _run_decode(args: argparse.Namespace) -> int:
    import json

    from ..qr import decode_qr
    from ..qr.fields import qr_to_fields

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
    from ..qr.render import render_png, render_svg, render_terminal

    data = parse_hex(args.hex)
    if data is None:
        raise UnrecognisedInput("the payload must be hex with an even number of digits")
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
"""``qrlink qr``: a group of two subcommands."""
