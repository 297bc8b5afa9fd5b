"""What every probe of one run shares: the options, the HTTP client, the report and the sessions to delete."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .cleanup import Cleanups
from .client import SelfTestClient
from .options import SelfTestOptions
from .report import Recorder, Status


@dataclass(slots=True)
class Run:
    """One run in progress."""

    http: SelfTestClient
    recorder: Recorder
    cleanups: Cleanups

    @property
    def options(self) -> SelfTestOptions:
        """What the run checks and how."""
        return self.http.options

    @property
    def base(self) -> str:
        """The normalised base URL under test."""
        return self.http.base

    def record(self, name: str, status: Status, message: str) -> None:
        """Add the verdict of the check called ``name``."""
        self.recorder.record(name, status, message)

    def skip(self, names: Iterable[str], reason: str) -> None:
        """Mark checks that could not run."""
        self.recorder.skip(names, reason)
