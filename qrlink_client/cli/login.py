"""``qrlink login`` (sign this machine in as a new device) and ``qrlink grant`` (sign a new device in from an
account this machine is already signed in to).

Both wrap the drivers of :mod:`qrlink_client.login` in a terminal UI: progress lines on stderr, the QR code
drawn in the terminal (or written as PNG, or printed as base64 on stdout for scripts), the check code asked
for on stdin. Heavy imports (vodozemac, httpx) happen inside the ``run_*`` functions, so ``qrlink --help``
and the other subcommands work without the ``e2ee`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import QrLinkError
from .command import CliUsageError
from .qr_input import read_qr_input
from .terminal import add_color_option, color_enabled

if TYPE_CHECKING:
    import httpx

    from ..channel import HpkeProfile
    from ..login import NewDeviceLoginResult, ShowGen1, ShowGen2
    from .io import Console, ProgressPrinter

__all__ = [
    "DEFAULT_SESSION_FILE",
    "SESSION_FORMAT",
    "DependencyMissing",
    "InvalidPickleKey",
    "MissingCredentials",
    "SessionFileExists",
    "add_gen2_profile_option",
    "configure_grant",
    "configure_login",
    "run_grant",
    "run_login",
]

DEFAULT_SESSION_FILE = Path("qrlink-session.json")
SESSION_FORMAT = "qrlink.session.v1"
"""The ``format`` field of a session file; see ``docs/cli.md``."""
PICKLE_KEY_SUFFIX = ".pickle-key"
ACCESS_TOKEN_ENV = "QRLINK_ACCESS_TOKEN"  # noqa: S105 - the variable's name, not a token
RECOVERY_KEY_ENV = "QRLINK_RECOVERY_KEY"


class DependencyMissing(QrLinkError):
    """An optional extra the command needs is not installed."""


class SessionFileExists(QrLinkError):
    """The session file already exists and ``--force`` was not given (a login would make it unreachable)."""


class InvalidPickleKey(QrLinkError):
    """The pickle key file does not hold 32 bytes as base64."""


class MissingCredentials(QrLinkError):
    """``qrlink grant`` has no access token (``--access-token`` or ``$QRLINK_ACCESS_TOKEN``)."""


def require_e2ee() -> None:
    """Raise :class:`DependencyMissing` unless vodozemac (the ``e2ee`` extra) can be imported."""
    try:
        import vodozemac  # noqa: F401
    except ImportError:
        raise DependencyMissing("signing in needs vodozemac: install qrlink[e2ee]") from None


def _add_show_options(parser: argparse.ArgumentParser, *, who: str) -> None:
    parser.add_argument(
        "--gen",
        type=int,
        choices=(1, 2),
        default=1,
        help=(
            f"protocol generation when {who} shows the QR code: 1 = MSC4108 (what Element's apps speak today; "
            "needs a rendezvous server), 2 = MSC4388 (the session lives on the homeserver). Default 1; a "
            "scanned QR code says its own generation"
        ),
    )
    parser.add_argument(
        "--rendezvous",
        metavar="URL",
        help=(
            "Gen-1 rendezvous server: its base URL or its full .../org.matrix.msc4108/rendezvous create URL. "
            "Default: the homeserver's own, if its /_matrix/client/versions advertises org.matrix.msc4108"
        ),
    )
    parser.add_argument("--qr-png", metavar="FILE", type=Path, help="also write the QR code as a PNG image")
    parser.add_argument(
        "--print-qr-base64",
        action="store_true",
        help="print the QR payload as one line of base64 on stdout (for scripts and tests)",
    )
    parser.add_argument(
        "--no-terminal-qr", action="store_true", help="do not draw the QR code in the terminal (stderr)"
    )
    add_color_option(parser)
    add_gen2_profile_option(parser)


GEN2_PROFILES = ("element-x", "msc4388", "vodozemac")
"""The canonical names of the Gen-2 channel profiles (``HpkeProfile`` values), as ``--gen2-profile`` lists them."""


def gen2_profile(name: str) -> HpkeProfile:
    """``--gen2-profile``'s type: a profile name or one of its older aliases (``msc``)."""
    from ..channel import HpkeProfile

    try:
        return HpkeProfile.parse(name)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid profile {name!r} (choose from {', '.join(GEN2_PROFILES)})") from None


def add_gen2_profile_option(parser: argparse.ArgumentParser, *, both_sides: bool = False) -> None:
    """``--gen2-profile``: the Gen-2 secure channel's profile (docs/protocol.md, "Profiles")."""
    who = "both devices use" if both_sides else "use"
    parser.add_argument(
        "--gen2-profile",
        metavar="{" + ",".join(GEN2_PROFILES) + "}",
        type=gen2_profile,
        default=None,
        help=(
            f"the Gen-2 secure channel profile to {who}, where the MSC4388 text and the shipping client "
            "disagree (labels, AAD, QR length fields). element-x: Element X's Gen-2 branch, the only Gen-2 "
            "client there is; msc4388: the MSC text, for implementations that follow it; vodozemac: vodozemac's "
            "labels with the text's AAD. Showing a code, the default is element-x and the code's layout tells "
            "the scanner which one; scanning, the default is the one the code's layout implies. Gen-1 has no "
            "profiles"
        ),
    )


def _check_gen2_profile(args: argparse.Namespace, *, showing: bool) -> None:
    """A code this device shows is Gen-1 unless ``--gen 2``: a profile for it is a mistake, not a no-op.
    A scanned code says its generation itself, so there the option only applies if it is Gen-2."""
    if showing and args.gen == 1 and args.gen2_profile is not None:
        raise CliUsageError("--gen2-profile applies to Gen-2 only; add --gen 2")


def _add_push_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--push",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use the rendezvous server's push delivery (long-poll or WebSocket) when offered (default: yes)",
    )


# --- qrlink login -------------------------------------------------------------------------------------------


def configure_login(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``qrlink login``."""
    parser.add_argument(
        "--homeserver",
        metavar="URL",
        help=(
            "client-server API base URL. Needed to show a Gen-2 QR code and to discover a Gen-1 rendezvous; "
            "when scanning, it replaces the .well-known lookup of the server name in the QR code"
        ),
    )
    parser.add_argument(
        "--scan",
        metavar="QR",
        help=(
            "be the device that scans: the QR code shown by the signed-in device, as an image file, base64 "
            "or hex (e.g. from 'qrlink grant --show --print-qr-base64')"
        ),
    )
    _add_show_options(parser, who="this device")
    parser.add_argument(
        "--session-file",
        metavar="PATH",
        type=Path,
        default=DEFAULT_SESSION_FILE,
        help=f"where to write the new session, mode 0600 (default: ./{DEFAULT_SESSION_FILE})",
    )
    parser.add_argument(
        "--pickle-key-file",
        metavar="PATH",
        type=Path,
        help=(
            "32-byte key (base64) that encrypts the Olm account in the session file. Read if it exists, "
            f"else generated and written 0600. Default: the session file's path + '{PICKLE_KEY_SUFFIX}'"
        ),
    )
    parser.add_argument("--force", action="store_true", help="replace an existing session file")
    parser.add_argument(
        "--device-id", metavar="ID", help="the device ID to ask for (default: the new Curve25519 identity key)"
    )
    _add_push_option(parser)


@dataclass
class _PickleKey:
    key: bytes
    path: Path
    created: bool


def _pickle_key(path: Path) -> _PickleKey:
    from .._b64 import b64decode, b64encode
    from .io import write_private_file

    if path.exists():
        try:
            key = b64decode(path.read_text(encoding="ascii").strip())
        except (QrLinkError, UnicodeDecodeError):
            raise InvalidPickleKey(f"{path} does not hold base64") from None
        if len(key) != 32:
            raise InvalidPickleKey(f"{path} holds {len(key)} bytes, not 32")
        return _PickleKey(key, path, created=False)
    key = secrets.token_bytes(32)
    write_private_file(path, (b64encode(key) + "\n").encode("ascii"), exclusive=True)
    return _PickleKey(key, path, created=True)


def session_document(result: NewDeviceLoginResult, pickle_key_file: Path) -> dict[str, Any]:
    """The JSON object a session file holds (the tokens and the encrypted Olm account: secret)."""
    return {
        "format": SESSION_FORMAT,
        "homeserver_url": result.homeserver_url,
        "user_id": result.user_id,
        "device_id": result.device_id,
        "access_token": result.access_token,
        "refresh_token": result.refresh_token,
        "pickled_account": result.pickled_account,
        "pickle_key_file": str(pickle_key_file.resolve()),
    }


def run_login(args: argparse.Namespace) -> int:
    """``qrlink login``: sign this machine in as a new device and write its session file."""
    if args.scan is None and args.gen == 2 and not args.homeserver:
        raise CliUsageError("showing a Gen-2 QR code needs --homeserver (the session is created there)")
    if args.scan is None and args.gen == 1 and not (args.rendezvous or args.homeserver):
        raise CliUsageError("showing a Gen-1 QR code needs --rendezvous, or --homeserver to discover it")
    _check_gen2_profile(args, showing=args.scan is None)
    session_file: Path = args.session_file.expanduser()
    if session_file.exists() and not args.force:
        raise SessionFileExists(f"{session_file} exists; pass --force to replace it")
    require_e2ee()
    key_path: Path = (args.pickle_key_file or Path(f"{session_file}{PICKLE_KEY_SUFFIX}")).expanduser()
    pickle_key = _pickle_key(key_path)
    try:
        result = asyncio.run(_login(args, pickle_key.key))
    except BaseException:
        if pickle_key.created:  # nothing was encrypted with it: leave nothing behind
            key_path.unlink(missing_ok=True)
        raise
    from .io import write_private_file

    document = session_document(result, key_path)
    write_private_file(session_file, (json.dumps(document, indent=2) + "\n").encode(), exclusive=not args.force)
    print(
        json.dumps(
            {
                "user_id": result.user_id,
                "device_id": result.device_id,
                "homeserver_url": result.homeserver_url,
                "session_file": str(session_file),
            }
        ),
        flush=True,
    )
    return 0


async def _login(args: argparse.Namespace, pickle_key: bytes) -> NewDeviceLoginResult:
    import httpx

    from ..e2ee import OlmDevice
    from ..login import login_new_device
    from ..transport import TransportOptions
    from .io import Console, check_code_prompt

    console = Console()
    scanned = read_qr_input(args.scan) if args.scan is not None else None
    async with httpx.AsyncClient(timeout=30.0) as http:
        show = None if scanned is not None else await _show(http, args)
        homeserver: str | None = args.homeserver

        async def resolve(server_name: str) -> str:
            assert homeserver is not None
            return homeserver

        return await login_new_device(
            http,
            pickle_key=pickle_key,
            on_progress=_progress_printer(console, args),
            show=show,
            scanned=scanned,
            check_code_prompt=check_code_prompt(console) if show is not None else None,
            device=OlmDevice.generate(args.device_id) if args.device_id else None,
            resolve_homeserver=resolve if homeserver else None,
            transport_options=TransportOptions(push=args.push),
            gen2_profile=args.gen2_profile if scanned is not None else None,
        )


async def _show(http: httpx.AsyncClient, args: argparse.Namespace) -> ShowGen1 | ShowGen2:
    """Where to create the session this device shows: ``--gen``, ``--rendezvous`` and ``--homeserver``."""
    from ..channel import HpkeProfile
    from ..discovery import discover_gen1_rendezvous, gen1_create_url
    from ..login import ShowGen1, ShowGen2

    if args.gen == 2:
        if not args.homeserver:
            raise CliUsageError("showing a Gen-2 QR code needs --homeserver (the session is created there)")
        return ShowGen2(args.homeserver, profile=args.gen2_profile or HpkeProfile.ELEMENT_X)
    if args.rendezvous:
        return ShowGen1(gen1_create_url(args.rendezvous))
    if not args.homeserver:
        raise CliUsageError("showing a Gen-1 QR code needs --rendezvous, or --homeserver to discover it")
    return ShowGen1(await discover_gen1_rendezvous(http, args.homeserver))


def _progress_printer(console: Console, args: argparse.Namespace) -> ProgressPrinter:
    """The progress lines of ``login`` and ``grant``, and the QR code as their options ask."""
    from .io import ProgressPrinter

    return ProgressPrinter(
        console,
        show_qr=not args.no_terminal_qr,
        on_qr=_qr_outputs(args),
        color=color_enabled(args.no_color),
        image_option="--qr-png",
    )


def _qr_outputs(args: argparse.Namespace) -> Callable[[bytes], None]:
    """What to do with the QR payload besides drawing it: ``--qr-png`` and ``--print-qr-base64``."""
    from .io import qr_payload_line

    def output(data: bytes) -> None:
        if args.qr_png is not None:
            from ..qr.render import render_png

            args.qr_png.write_bytes(render_png(data))
        if args.print_qr_base64:
            print(qr_payload_line(data), flush=True)

    return output


# --- qrlink grant -------------------------------------------------------------------------------------------


def configure_grant(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``qrlink grant``."""
    parser.add_argument("--homeserver", metavar="URL", required=True, help="client-server API base URL of your account")
    parser.add_argument(
        "--access-token",
        metavar="TOKEN",
        default=None,
        help=f"an access token of this (signed-in) device; default ${ACCESS_TOKEN_ENV}",
    )
    parser.add_argument(
        "--recovery-key",
        metavar="KEY",
        default=None,
        help=(
            f"the recovery key that unlocks your secret storage; default ${RECOVERY_KEY_ENV}, else asked "
            "for without echo. Visible to other local users when given on the command line"
        ),
    )
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--qr", metavar="QR", help="the QR code the new device shows: an image file, base64 or hex")
    role.add_argument("--show", action="store_true", help="show a QR code for the new device to scan instead")
    _add_show_options(parser, who="this device")
    parser.add_argument(
        "--server-name",
        metavar="NAME",
        help="server name in a Gen-1 QR code this device shows (default: the domain of your user ID)",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="print the verification URL instead of opening it in a web browser",
    )
    _add_push_option(parser)


def run_grant(args: argparse.Namespace) -> int:
    """``qrlink grant``: approve a new device and send it the secrets."""
    _check_gen2_profile(args, showing=args.show)
    access_token = args.access_token or os.environ.get(ACCESS_TOKEN_ENV)
    if not access_token:
        raise MissingCredentials(f"pass --access-token or set ${ACCESS_TOKEN_ENV}")
    require_e2ee()
    recovery_key = args.recovery_key or os.environ.get(RECOVERY_KEY_ENV) or _ask_recovery_key()
    device_id = asyncio.run(_grant(args, access_token, recovery_key))
    print(json.dumps({"device_id": device_id}), flush=True)
    return 0


def _ask_recovery_key() -> str:
    from .io import Console, read_line_now

    prompt = "recovery key (not shown): "
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt, stream=sys.stderr).strip()
    # Not a terminal (a pipe from a script): read exactly one line, leaving the rest for the check code.
    console = Console()
    console.prompt(prompt)
    answer = read_line_now().strip()
    console.answered()
    return answer


async def _grant(args: argparse.Namespace, access_token: str, recovery_key: str) -> str:
    import httpx

    from ..e2ee import E2eeHomeserver, SecretStorageSecrets
    from ..login import ShowGen1, grant_login
    from ..transport import TransportOptions
    from .io import Console, check_code_prompt

    console = Console()
    scanned = read_qr_input(args.qr) if args.qr is not None else None
    async with httpx.AsyncClient(timeout=30.0) as http:
        homeserver = E2eeHomeserver(args.homeserver, access_token, client=http)
        show = None if scanned is not None else await _show(http, args)
        server_name = None
        if isinstance(show, ShowGen1):
            server_name = args.server_name or (await homeserver.user_id()).partition(":")[2]

        async def open_uri(uri: str) -> bool:
            console.line(f"open this URL to approve the new device: {uri}")
            if args.no_browser:
                return True
            import webbrowser

            if not await asyncio.to_thread(webbrowser.open, uri):
                console.line("no web browser could be started; open the URL above yourself")
            # Printed for the user either way, so the URI is "opened" as far as the new device is concerned.
            return True

        return await grant_login(
            http,
            homeserver_url=args.homeserver,
            access_token=access_token,
            secrets=SecretStorageSecrets(recovery_key, homeserver),
            open_verification_uri=open_uri,
            on_progress=_progress_printer(console, args),
            show=show,
            server_name=server_name,
            scanned=scanned,
            gen2_profile=args.gen2_profile if scanned is not None else None,
            check_code_prompt=check_code_prompt(console) if show is not None else None,
            transport_options=TransportOptions(push=args.push),
        )
