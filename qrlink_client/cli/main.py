"""The ``qrlink`` command line.

Each subcommand is a :class:`~qrlink_client.cli.command.Command`: a name, a help line, a function that adds its
arguments and a function that runs it and returns the exit status. Adding a subcommand means writing one more
and listing it in :data:`COMMANDS`; subcommands with their own subcommands (``qrlink qr decode``, in
:mod:`qrlink_client.cli.qr`) nest the same way.

Exit status: 0 on success; 1 when the library reports an error, printed as
``qrlink: <ErrorClass>: <message>``; 2 for usage errors (argparse's convention); 130 when interrupted
(Ctrl-C), after the command has cleaned up; 141 (128 + SIGPIPE), silently, when stdout is a pipe whose reader
has gone (``qrlink qr decode ... | head -n 1``), as for any program killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import QrLinkError
from . import demo, login
from .command import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CliUsageError, Command
from .qr import QR
from .qr_input import UnrecognisedInput, read_qr_input

__all__ = ["COMMANDS", "CliUsageError", "Command", "UnrecognisedInput", "build_parser", "main", "read_qr_input"]


# --- qrlink peer --------------------------------------------------------------------------------------------


def _run_peer(args: argparse.Namespace) -> int:
    # The peer's channel and transport code is loaded only when it runs.
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


# --- qrlink login / grant / demo ----------------------------------------------------------------------------

LOGIN = Command(
    name="login",
    help="sign this machine in as a new device with a QR code",
    description=(
        "Sign in as a new device. By default this device shows a QR code (in the terminal; --qr-png and "
        "--print-qr-base64 for other outputs) for a signed-in device to scan, then asks for the two-digit "
        "check code that device displays. With --scan it reads the QR code a signed-in device shows and "
        "displays the check code instead. Either way it then shows the user code to compare on the "
        "verification page, receives the encryption secrets, publishes its cross-signed keys and writes the "
        "session (tokens, user and device ID, encrypted Olm account) to --session-file. Progress goes to "
        "stderr; stdout gets only --print-qr-base64 and one final JSON line."
    ),
    epilog=(
        "examples:\n"
        "  qrlink login --homeserver https://matrix.example.org            # Gen-1, rendezvous discovered\n"
        "  qrlink login --gen 2 --homeserver https://matrix.example.org\n"
        "  qrlink login --gen 2 --gen2-profile msc4388 --homeserver https://matrix.example.org  # MSC text peer\n"
        "  qrlink login --rendezvous https://rz.example.org/ --session-file ~/.config/me.json\n"
        "  qrlink login --scan shown-by-phone.png --homeserver https://matrix.example.org"
    ),
    configure=login.configure_login,
    run=login.run_login,
)

GRANT = Command(
    name="grant",
    help="sign a new device in from this (signed-in) device",
    description=(
        "Act as the device that is already signed in: scan the new device's QR code (--qr) or show one "
        "(--show), confirm the check code, open the verification URL for you to approve the new device, "
        "and send it the cross-signing and backup keys, unlocked from secret storage with your recovery key."
    ),
    epilog=(
        "examples:\n"
        "  export QRLINK_ACCESS_TOKEN=...    # a token of this device\n"
        "  qrlink grant --homeserver https://matrix.example.org --qr code.png\n"
        "  qrlink grant --homeserver https://matrix.example.org --qr AgQg...   # base64 or hex works too\n"
        "  qrlink grant --homeserver https://matrix.example.org --show --gen 2 --no-browser"
    ),
    configure=login.configure_grant,
    run=login.run_grant,
)

DEMO = Command(
    name="demo",
    help="phone-to-desktop handover on this machine, against a local Synapse",
    description=(
        "Start the development stack (OAuth server, a real Synapse, the rendezvous server; the first run "
        "installs Synapse), create a user 'demo-<random>' whose first device (the phone) has cross-signing "
        "and key backup, and sign in a second device (the desktop) from it, both in this process with live "
        "progress. Then check on Synapse that the desktop is cross-signed and holds the backup key, print a "
        "one-line JSON summary as the last line of stdout and stop the stack. Exit status 0 only if the "
        "desktop is cross-signed and its backup key verified. Ctrl-C stops everything cleanly."
    ),
    epilog=(
        "examples:\n"
        "  qrlink demo                       # you approve in a browser and type the check code\n"
        "  qrlink demo --auto --gen 2        # no human: for CI\n"
        "  qrlink demo --auto --gen 2 --gen2-profile msc4388 --gen2-rendezvous qrlink\n"
        "  qrlink demo --auto --roles existing-shows --no-push"
    ),
    configure=demo.configure_demo,
    run=demo.run_demo,
)

COMMANDS: tuple[Command, ...] = (PEER, QR, LOGIN, GRANT, DEMO)
"""The top-level subcommands, in ``--help`` order."""


# --- parser and entry point ---------------------------------------------------------------------------------


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions like argparse does, but keeps indented lines (example commands) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if not line or line.startswith(" "):
                lines.append(indent + line)
            else:
                lines.append(super()._fill_text(line, width, indent))
        return "\n".join(lines)


def _add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], dest: str) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            epilog=command.epilog or None,
            formatter_class=_HelpFormatter,
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
    try:
        try:
            return _main(argv)
        finally:
            # Output still buffered is written here, so a reader that has gone shows up now and not as an
            # "Exception ignored" message when the interpreter exits (also after --help, which exits).
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout's file descriptor at the null device: what is still buffered goes nowhere at exit
    instead of failing once more (the recipe of the Python documentation on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no stdout, or not a file (output captured in-process)
        pass
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._run
    try:
        return run(args)
    except BrokenPipeError:
        raise  # stdout's reader has gone: not an error to report (see main)
    except KeyboardInterrupt:
        print("qrlink: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliUsageError as exc:
        print(f"qrlink: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QrLinkError as exc:
        print(f"qrlink: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"qrlink: {exc.strerror or type(exc).__name__}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_ERROR
