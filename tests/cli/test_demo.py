"""``qrlink demo`` as a real child process: it starts its own development stack (real Synapse, OAuth server,
rendezvous server), hands a fresh account from the "phone" to the "desktop" and checks the result on Synapse."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import answer_verification_page
from tests.cli._process import Qrlink

#: Every wait on one demo process ends by then (it starts a whole stack first); the pytest timeout is a backstop.
DEMO_WITHIN = 120.0  # a demo takes about 6-12 s
pytestmark = [pytest.mark.synapse, pytest.mark.timeout(180)]

ANSI = re.compile(r"\x1b\[[0-9;]*m")

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
        demo = Qrlink(["demo", "--auto", *args], within=DEMO_WITHIN)
        status = demo.finish(timeout=DEMO_WITHIN)
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
    assert summary["history_decrypted"] is True


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_desktop_decrypts_the_history_the_phone_wrote_before_the_handover(
    runs: dict[tuple[str, ...], Run], args: tuple[str, ...]
) -> None:
    run = auto_demo(runs, args)

    assert run.summary["history_decrypted"] is True
    sent = index_of(run.stderr, r"^\[phone\] sent a Megolm-encrypted message in the encrypted room (\S+) ")
    restored = index_of(run.stderr, r"^\[desktop\] restored 1 room key\(s\) from key backup \d+ ")
    decrypted = index_of(run.stderr, r"^\[desktop\] decrypted PHONE's message in \S+: 'Hello from the phone")
    assert sent < index_of(run.stderr, r"^\[desktop\] starting$") < restored < decrypted


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


def index_of(lines: list[str], pattern: str) -> int:
    """The index of the only line matching ``pattern`` (each progress line is said once)."""
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, (pattern, found, "\n".join(lines))
    return found[0]


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_tells_each_devices_steps_once_in_the_order_they_happened(
    runs: dict[tuple[str, ...], Run], args: tuple[str, ...]
) -> None:
    lines = auto_demo(runs, args).stderr
    shower, scanner = ("phone", "desktop") if "existing-shows" in args else ("desktop", "phone")
    scanned = "the phone's" if scanner == "desktop" else "the desktop's"

    qr_ready = index_of(lines, rf"^\[{shower}\] QR code ready ")
    scanner_starts = index_of(lines, rf"^\[{scanner}\] starting$")
    scanner_scanned = index_of(lines, rf"^\[{scanner}\] scanned {scanned} QR code$")
    assert index_of(lines, rf"^\[{shower}\] starting$") < qr_ready < scanner_starts < scanner_scanned

    shown = index_of(lines, rf"^\[{scanner}\] secure channel established; check code: \d\d$")
    assert shown < index_of(lines, rf"^\[{shower}\] typing the check code \d\d \(--auto\)$")

    asked = index_of(lines, r"^\[phone\] the desktop asks to sign in to this account; approve it on the verification")
    opened = index_of(lines, r"^\[phone\] opening the verification page .*: http://127\.0\.0\.1:\d+/link\?user_code=")
    user_code = index_of(lines, r"^\[desktop\] waiting for approval; user code: ")
    approved = index_of(lines, r"^\[phone\] the verification page shows user code \S+, as the desktop does: approved")
    assert asked < opened < user_code < approved

    signed_in = index_of(lines, r"^\[desktop\] signed in; receiving the encryption secrets$")
    sending = index_of(lines, r"^\[phone\] the desktop is signed in; sending it the encryption secrets$")
    assert approved < signed_in < sending

    said = [line for line in lines if line.startswith("[")]
    assert len(said) == len(set(said)), "a line was said twice"
    assert sum("/link?user_code=" in line for line in lines) == 1, "the verification URL is printed once"
    assert not any(line.startswith("[phone] signed in") for line in lines)


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_draws_the_qr_code_with_a_note_that_it_is_only_for_show(
    runs: dict[tuple[str, ...], Run], args: tuple[str, ...]
) -> None:
    lines = auto_demo(runs, args).stderr
    shower = "phone" if "existing-shows" in args else "desktop"

    ready = index_of(lines, rf"^\[{shower}\] QR code ready ")
    note = index_of(lines, rf"^\[{shower}\] this QR code points at 127\.0\.0\.1 and is only for show")
    # Between them: the code, black on white, two module rows per line (and advice if the window is too small).
    drawn = [ANSI.sub("", line) for line in lines[ready + 1 : note] if line.startswith("\x1b[30;47m")]
    assert len(drawn) >= 12 and all(set(line) <= set(" \u2580\u2584\u2588") for line in drawn)


@pytest.mark.parametrize("args", AUTO_RUNS)
def test_auto_demo_stops_the_stack_before_exiting(runs: dict[tuple[str, ...], Run], args: tuple[str, ...]) -> None:
    assert auto_demo(runs, args).stderr[-1] == "[demo] stopped"


def test_interactive_demo_takes_the_check_code_on_stdin_and_waits_for_the_human_to_approve() -> None:
    demo = Qrlink(["demo", "--gen", "1"], within=DEMO_WITHIN)
    try:
        # Not anchored at the line start: the desktop's prompt has no newline, so the phone's line may follow it.
        code = demo.wait_for(r"\[phone\] .*check code: (\d\d)$", timeout=DEMO_WITHIN).group(1)
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
    summary = json.loads(demo.stdout[-1])
    assert (summary["cross_signed"], summary["history_decrypted"]) == (True, True)


def test_a_wrong_check_code_fails_the_demo_with_the_real_elapsed_time() -> None:
    demo = Qrlink(["demo", "--gen", "1"])
    try:
        code = demo.wait_for(r"\[phone\] .*check code: (\d\d)$", timeout=240).group(1)
        demo.wait_for(r"^\[desktop\] secure channel established; the phone shows a two-digit check code$")
        demo.answer(f"{(int(code) + 1) % 100:02d}")

        assert demo.finish(timeout=120) == 1, demo.output()
    finally:
        demo.kill()
    summary = json.loads(demo.stdout[-1])
    assert summary["error"].startswith("CheckCodeMismatch")
    assert summary["elapsed_ms"] > 0
    assert (summary["cross_signed"], summary["backup_key_verified"], summary["history_decrypted"]) == (
        False,
        False,
        False,
    )
    assert demo.stderr[-1] == "[demo] stopped"


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
    demo = Qrlink(["demo", "--gen", "1"], within=DEMO_WITHIN)
    try:
        demo.wait_for(
            r"^\[desktop\] secure channel established; the phone shows a two-digit check code$", timeout=DEMO_WITHIN
        )
        stack_processes = _children(demo.process.pid)  # Synapse and the rendezvous server
        assert len(stack_processes) == 2

        demo.process.send_signal(sig)

        # On a failure, what the demo printed last says where the signal landed.
        assert demo.finish(timeout=60) == 130, demo.stderr[-20:]
    finally:
        demo.kill()
    assert [pid for pid in stack_processes if os.path.exists(f"/proc/{pid}")] == []
    assert demo.stderr[-3:] == ["[demo] stopping the development stack", "[demo] stopped", "qrlink: interrupted"]


def test_auto_demo_gen2_runs_element_x_on_both_devices(runs: dict[tuple[str, ...], Run]) -> None:
    run = auto_demo(runs, ("--gen", "2"))

    lines = [ANSI.sub("", line) for line in run.stderr]
    assert "[desktop] Gen-2 channel profile: element-x" in lines
    assert "[phone] Gen-2 channel profile: element-x" in lines


def test_auto_demo_runs_the_msc_texts_profile_through_our_server(runs: dict[tuple[str, ...], Run]) -> None:
    run = auto_demo(runs, ("--gen", "2", "--gen2-profile", "msc4388", "--gen2-rendezvous", "qrlink"))

    lines = [ANSI.sub("", line) for line in run.stderr]
    assert (run.status, run.summary["error"]) == (0, None), "\n".join(lines)
    assert "[desktop] Gen-2 channel profile: msc4388" in lines
    assert "[phone] Gen-2 channel profile: msc4388" in lines
