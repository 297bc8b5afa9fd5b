"""``qrlink qr decode`` and ``qrlink qr render``: the QR payload utilities.

The QR libraries are imported when a command runs, so ``qrlink --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .command import EXIT_OK, Command
from .qr_input import UnrecognisedInput, read_qr_input
from .terminal import add_color_option, color_enabled

if TYPE_CHECKING:
    from ..qr import QrCode

__all__ = ["QR", "implied_profile"]

_INPUT_HELP = (
    "the payload: hex, base64 (standard or URL-safe, padding optional), a file (an image of the QR code, "
    "or the payload as bytes, hex or base64), or - to read any of those from stdin"
)


def implied_profile(code: QrCode) -> str | None:
    """The Gen-2 channel profile a code's layout implies (``None`` for Gen-1, or a layout that implies none)."""
    from ..channel import HpkeProfile
    from ..qr import Gen2QrCode

    if not isinstance(code, Gen2QrCode):
        return None
    profile = HpkeProfile.for_layout(code.layout.value)
    return None if profile is None else profile.value


def _configure_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="QR", help=_INPUT_HELP)
    parser.add_argument("--json", action="store_true", help="print the fields as one JSON object")


def _run_decode(args: argparse.Namespace) -> int:
    import json

    from ..qr import decode_qr
    from ..qr.fields import qr_to_fields, qr_to_text_fields

    data = read_qr_input(args.input, allow_stdin=True)
    code = decode_qr(data)
    profile = implied_profile(code)
    if args.json:
        fields = qr_to_fields(code)
        if code.generation == 2:
            fields["profile"] = profile
        fields["hex"] = data.hex()
        print(json.dumps(fields))
    else:
        shown = qr_to_text_fields(code)
        if code.generation == 2:
            shown["profile"] = profile or "none implied (older u16/u16 layout): name one when scanning"
        shown["hex"] = data.hex()
        width = max(map(len, shown))
        for name, value in shown.items():
            print(f"{name:<{width}}  {value}")
    return EXIT_OK


def _configure_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="QR", help=_INPUT_HELP)
    parser.add_argument("--png", metavar="FILE", type=Path, help="write a PNG image to FILE")
    parser.add_argument("--svg", metavar="FILE", type=Path, help="write an SVG image to FILE")
    parser.add_argument(
        "--terminal",
        action="store_true",
        help="print the code with Unicode half blocks on stdout (the default when no file is given)",
    )
    parser.add_argument("--scale", type=int, default=8, help="pixels per module in PNG/SVG (default 8)")
    add_color_option(parser)


def _run_render(args: argparse.Namespace) -> int:
    from ..qr.render import DEFAULT_BORDER, make_symbol, render_png, render_svg
    from .terminal import draw_qr

    if args.scale < 1:
        raise UnrecognisedInput("--scale must be at least 1")
    data = read_qr_input(args.input, allow_stdin=True)
    symbol = make_symbol(data)
    width, height = symbol.symbol_size(scale=args.scale, border=DEFAULT_BORDER)
    modules = symbol.symbol_size(scale=1, border=0)[0]
    geometry = f"{width}x{height} px, {modules}x{modules} modules, error correction {symbol.error}"
    if args.png is not None:
        png = render_png(data, scale=args.scale)
        args.png.write_bytes(png)
        print(f"wrote {args.png}: PNG, {geometry}, {len(png)} bytes", file=sys.stderr)
    if args.svg is not None:
        svg = render_svg(data, scale=args.scale).encode("utf-8")
        args.svg.write_bytes(svg)
        print(f"wrote {args.svg}: SVG, {geometry}, {len(svg)} bytes", file=sys.stderr)
    if args.terminal or (args.png is None and args.svg is None):
        drawn = draw_qr(data, sys.stdout, color=color_enabled(args.no_color), image_option="--png")
        sys.stdout.write(drawn.text)
        sys.stdout.flush()
        if drawn.advice:
            print(f"qrlink: {drawn.advice}", file=sys.stderr)
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
                "Decode a QR payload and print its fields. The payload is given as hex, as base64 (standard or "
                "URL-safe, padded or not), as a file (an image of the QR code, PNG, JPEG, ..., which needs the "
                "qr-image extra; or a file holding the payload bytes, hex or base64), or as - for stdin."
            ),
            epilog=(
                "examples:\n"
                "  qrlink qr decode code.png                 # an image of the QR code\n"
                "  qrlink qr decode TUFUUklYAgPYhmhqshl7...  # the payload as base64 or hex\n"
                "  qrlink qr decode --json - < payload.txt   # read from stdin"
            ),
            configure=_configure_decode,
            run=_run_decode,
        ),
        Command(
            name="render",
            help="draw a QR payload as PNG, SVG or terminal text",
            description=(
                "Render payload bytes (given as for 'qrlink qr decode') as a QR code in byte mode. Images use "
                "error correction level Q and a quiet zone of 4 modules. In the terminal the code is drawn black "
                "on white with half blocks, two module rows per line, a quiet zone of 2 modules and the highest "
                "of error correction Q, M and L that fits the window; if none fits, it says so on stderr. Each "
                "file written is reported on stderr."
            ),
            epilog=(
                "examples:\n"
                "  qrlink qr render TUFUUklYAgPYhmhqshl7...           # draw it in the terminal\n"
                "  qrlink qr render TUFUUklYAgPYhmhqshl7... --png code.png\n"
                "  qrlink qr render - --svg code.svg < payload.txt    # read from stdin"
            ),
            configure=_configure_render,
            run=_run_render,
        ),
    ),
)
"""``qrlink qr``: a group of two subcommands."""
