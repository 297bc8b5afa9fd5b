"""The results of a self-test run: one named verdict per check, and the report that collects them."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """The verdict of one check."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: a stable name, a verdict and what was seen (with the likely cause and fix on failure)."""

    name: str
    status: Status
    message: str

    def as_dict(self) -> dict[str, str]:
        """The result as plain JSON values."""
        return {"name": self.name, "status": self.status.value, "message": self.message}


@dataclass(slots=True)
class SelfTestReport:
    """Every check of one run, in the order they finished."""

    base_url: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check failed (warnings and skips do not fail a run)."""
        return all(result.status is not Status.FAIL for result in self.results)

    @property
    def exit_status(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        return {status.value: sum(r.status is status for r in self.results) for status in Status}

    def get(self, name: str) -> CheckResult | None:
        """The result of the check called ``name``, if it ran."""
        return next((result for result in self.results if result.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "base_url": self.base_url,
            "ok": self.ok,
            "summary": self.counts(),
            "checks": [result.as_dict() for result in self.results],
        }


class Recorder:
    """Adds results to a report and tells ``on_result`` about each one as it is made (for progress output)."""

    def __init__(self, report: SelfTestReport, on_result: Callable[[CheckResult], None] | None = None) -> None:
        self.report = report
        self._on_result = on_result

    def record(self, name: str, status: Status, message: str) -> None:
        """Add the verdict of the check called ``name``."""
        result = CheckResult(name, status, message)
        self.report.results.append(result)
        if self._on_result is not None:
            self._on_result(result)

    def skip(self, names: Iterable[str], reason: str) -> None:
        """Mark checks that could not run, all for one ``reason``."""
        for name in names:
            self.record(name, Status.SKIP, reason)
