"""What every ``qrlink`` subcommand is made of, and the exit statuses they return.

Each subcommand is a :class:`Command`; :mod:`qrlink_client.cli.main` turns the table of them into the argument
parser and maps errors to exit statuses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import QrLinkError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliUsageError",
    "Command",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a program killed by writing to a closed pipe reports


class CliUsageError(QrLinkError):
    """The options given cannot work together (exit status 2, like argparse's own usage errors)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` executes it and returns the exit status.

    A command with ``children`` is a group (``qrlink qr``): it takes no action of its own and dispatches to
    one of them.
    """

    name: str
    help: str
    description: str = ""
    epilog: str = ""
    configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    run: Callable[[argparse.Namespace], int] | None = None
    children: Sequence[Command] = field(default_factory=tuple)
