"""``qrlink demo`` as a real child process: it starts its own development stack (real Synapse, OAuth server,
rendezvous server), hands a fresh account from the "phone" to the "desktop" and checks the result on Synapse."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import answer_verification_page
from tests.cli._process import Qrlink

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(300)]

AUTO_RUNS = [
    pytest.param(("--gen", "1"), id="gen1-new-shows"),
    pytest.param(("--gen", "2"), id="gen2-new-shows"),
    pytest.param(("--gen", "2", "--roles", "existing-shows", "--no-push"), id="gen2-existing-shows-no-push"),
]


@dataclass(frozen=True)
class Run:
    status: int
    summary: dict[str, Any]
    stderr: list[str]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, ...], Run]:
    """Each ``qrlink demo --auto`` variant once per module (each starts and stops a whole stack)."""
    return {}


def auto_demo(runs: dict[tuple[str, ...], Run], args: tuple[str, ...]) -> Run:
    if args not in runs:
        demo = Qrlink(["demo", "--auto", *args])
        status = demo.finish(timeout=240)
        assert demo.stdout, demo.output()
        runs[args] = Run(status, json.loads(demo.stdout[-1]), demo.stderr)
    return runs[args]


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_exits_with_status_0(runs: dict[tuple[str, ...], Run], args: tuple[str, ...]) -> None:
    assert auto_demo(runs, args).status == 0


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_summary_says_the_new_device_is_cross_signed_with_the_backup_key(
    runs: dict[tuple[str, ...], Run], args: tuple[str, ...]
) -> None:
    summary = auto_demo(runs, args).summary

    assert (summary["cross_signed"], summary["backup_key_verified"], summary["error"]) == (True, True, None)


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_summary_names_roles_generation_user_and_device(
    runs: dict[tuple[str, ...], Run], args: tuple[str, ...]
) -> None:
    summary = auto_demo(runs, args).summary

    expected_roles = "existing-shows" if "existing-shows" in args else "new-shows"
    assert (summary["roles"], summary["generation"]) == (expected_roles, int(args[1]))
    assert summary["user_id"].startswith("@demo-") and summary["user_id"].endswith(":localhost")
    assert summary["device_id"] and summary["elapsed_ms"] > 0


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_prefixes_each_devices_progress(runs: dict[tuple[str, ...], Run], args: tuple[str, ...]) -> None:
    stderr = auto_demo(runs, args).stderr

    assert any(line.startswith("[desktop] done: this device is ") for line in stderr)
    assert any(line.startswith("[phone] done: signed in device ") for line in stderr)


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_stops_the_stack_before_exiting(runs: dict[tuple[str, ...], Run], args: tuple[str, ...]) -> None:
    assert auto_demo(runs, args).stderr[-1] == "[demo] stopped"


def test_interactive_demo_takes_the_check_code_on_stdin_and_waits_for_the_human_to_approve() -> None:
    demo = Qrlink(["demo", "--gen", "1"])
    try:
        # Not anchored at the line start: the desktop's prompt has no newline, so the phone's line may follow it.
        code = demo.wait_for(r"\[phone\] .*check code: (\d\d)$", timeout=240).group(1)
        # The prompt ends without a line break; the answer waits in stdin until the prompt reads it.
        demo.wait_for(r"^\[desktop\] secure channel established; the phone shows a two-digit check code$")
        demo.answer(code)
        uri = demo.wait_for(r"^\[phone\] open this URL in a browser and approve the desktop: (\S+)$").group(1)
        account = demo.wait_for(r"^\[phone\] sign in there as (\S+) with password (\S+) ")
        # The test is the human with a browser here.
        asyncio.run(answer_verification_page(uri, localpart=account.group(1), password=account.group(2)))

        assert demo.finish(timeout=120) == 0, demo.output()
    finally:
        demo.kill()
    assert json.loads(demo.stdout[-1])["cross_signed"] is True


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 is the parent's PID; the command name before it is in parentheses and may hold spaces.
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_the_demo_stops_the_stack_and_exits_130(sig: signal.Signals) -> None:
    demo = Qrlink(["demo", "--gen", "1"])
    try:
        demo.wait_for(r"^\[desktop\] secure channel established; the phone shows a two-digit check code$", timeout=240)
        stack_processes = _children(demo.process.pid)  # Synapse and the rendezvous server
        assert len(stack_processes) == 2

        demo.process.send_signal(sig)

        assert demo.finish(timeout=60) == 130
    finally:
        demo.kill()
    assert [pid for pid in stack_processes if os.path.exists(f"/proc/{pid}")] == []
