"""Deadlines for the tests that run whole logins (``tests/e2e``, ``tests/cli``): no test relies on the pytest
timeout.

Each flow ends by the test's own deadline and fails with a message that names what it waited for and what each
device did last (:func:`ended_within`, :func:`step_within`). The pytest timeout of those directories is only a
backstop, set well above every deadline; a test that still reaches it is a bug in the test, and
:func:`pytest_runtest_makereport` (imported by the directory's ``conftest.py``) says so at the top of its report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: How long a cancelled device may take to wind down before the test gives up on it as well.
CANCEL_GRACE_S = 5.0
_PYTEST_TIMEOUT = "from pytest-timeout"


async def ended_within(
    tasks: Mapping[str, asyncio.Task[Any]],
    within: float,
    waiting_for: str,
    describe: Callable[[str], str] | None = None,
) -> None:
    """Wait until every task (keyed by the device's name, "new device") has ended.

    If one is still running after ``within`` seconds, all are cancelled and the test fails with a message naming
    ``waiting_for`` ("the new device to be told device_already_exists") and, through ``describe(name)``, what
    each device still running did last.
    """
    _, pending = await asyncio.wait(tasks.values(), timeout=within)
    if not pending:
        return
    for task in pending:
        task.cancel()
    _, stuck = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
    running = [name for name, task in tasks.items() if task in pending]
    details = "; ".join(f"the {name} ({describe(name)})" if describe else f"the {name}" for name in running)
    note = f" (and did not end within {CANCEL_GRACE_S:.0f} s of being cancelled)" if stuck else ""
    message = f"gave up after {within:.0f} s waiting for {waiting_for}; still running{note}: {details}"
    pytest.fail(message, pytrace=False)


async def step_within(step: Awaitable[T], within: float, waiting_for: str) -> T:
    """``await step``, failing the test with a message naming ``waiting_for`` after ``within`` seconds."""
    try:
        return await asyncio.wait_for(step, within)
    except TimeoutError:
        pytest.fail(f"gave up after {within:.0f} s waiting for {waiting_for}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A test that ran into the pytest timeout relied on it: say so first in its report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    excinfo = call.excinfo
    if not (report.failed and excinfo is not None and _PYTEST_TIMEOUT in str(excinfo.value)):
        return
    marker = item.get_closest_marker("timeout")
    limit = f"{marker.args[0]:g} s " if marker is not None and marker.args else ""
    report.longrepr = (
        f"{item.nodeid} relied on the pytest timeout ({limit}backstop) instead of ending by its own deadline. "
        "Give the flow a deadline that fails with a message naming the step it waited for "
        "(tests/support/deadlines.py, docs/testing.md). pytest-timeout's report:\n\n"
        f"{report.longrepr}"
    )


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``predicate`` holds (polling every 10 ms), failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
