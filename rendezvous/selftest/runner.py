"""A whole run: Gen-1, then Gen-2, then the clean-up, each step's failure contained to its own checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from .cleanup import Cleanups
from .client import RequestFailed, SelfTestClient, open_client
from .context import Run
from .gen1_probes import run_gen1
from .gen2_probes import run_gen2
from .options import SelfTestOptions
from .report import CheckResult, Recorder, SelfTestReport, Status


async def run_selftest(
    options: SelfTestOptions,
    *,
    on_result: Callable[[CheckResult], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SelfTestReport:
    """Run every check against ``options.base_url``; ``on_result`` sees each result as it is made.

    Never raises for what the server does: unreachable hosts and broken answers become failed checks.
    """
    async with open_client(options, transport) as client:
        http = SelfTestClient(options, client)
        report = SelfTestReport(http.base)
        run = Run(http, Recorder(report, on_result), Cleanups())
        try:
            await _generation(run, "gen1", options.gen1, run_gen1, "Gen-1 (MSC4108)")
            await _generation(run, "gen2", options.gen2, run_gen2, "Gen-2 (MSC4388)")
        finally:
            await _clean_up(run)
        return report


async def _generation(run: Run, name: str, wanted: bool, checks: Callable[[Run], Awaitable[None]], title: str) -> None:
    """One generation's checks; a request that got no answer ends them with ``<name>.reachable``."""
    if not wanted:
        run.record(name, Status.SKIP, f"{title} checks skipped on request.")
        return
    try:
        await checks(run)
    except RequestFailed as exc:
        run.record(
            f"{name}.reachable",
            Status.FAIL,
            f"{exc}. Check the URL, DNS, TLS certificate and that the proxy forwards these paths.",
        )


async def _clean_up(run: Run) -> None:
    """Delete every session this run created that a check did not already delete; ``cleanup`` if there were any."""
    pending, failures = await run.cleanups.delete_left_over(run.http)
    if not pending:
        return
    if failures:
        run.record(
            "cleanup",
            Status.WARN,
            f"{failures} session(s) this test created could not be deleted; they expire on their own.",
        )
    else:
        run.record("cleanup", Status.PASS, f"Deleted the {pending} session(s) left over from failed steps.")
