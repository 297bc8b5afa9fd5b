"""How a report is printed: one line per check and a summary, or the whole report as JSON."""

from __future__ import annotations

import json

from .report import CheckResult, SelfTestReport, Status

_LABELS = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.WARN: "WARN", Status.SKIP: "skip"}


def format_result(result: CheckResult) -> str:
    """One line per check: verdict, name, explanation."""
    return f"  {_LABELS[result.status]:<4}  {result.name:<26} {result.message}"


def format_summary(report: SelfTestReport) -> str:
    """The closing line of a human-readable run."""
    counts = report.counts()
    verdict = "OK" if report.ok else "FAILED"
    return (
        f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, {counts['warn']} warnings, "
        f"{counts['skip']} skipped."
    )


def report_json(report: SelfTestReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.as_dict(), indent=2)
