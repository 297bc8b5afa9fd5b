"""What ``qrlink login``, ``grant`` and ``demo`` say and refuse before a login starts, and the terminal helpers
they share. No server is contacted except where a closed local port stands for an unreachable homeserver."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrlink_client.cli import main
from qrlink_client.cli.io import Console, InputClosed, ProgressPrinter, check_code_prompt, stdin_line
from qrlink_client.cli.main import build_parser
from qrlink_client.cli.terminal import terminal_size
from qrlink_client.discovery import gen1_create_url
from qrlink_client.flow import Progress
from qrlink_client.login import QrCodeReady
from qrlink_client.qr import Gen1Mode, Gen1QrCode
from rendezvous.protocol import GEN1_PATH


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "login",
            [
                "--homeserver",
                "--rendezvous",
                "--scan",
                "--gen",
                "--session-file",
                "--pickle-key-file",
                "--qr-png",
                "--print-qr-base64",
                "--gen2-profile",
                "--push",
            ],
        ),
        (
            "grant",
            [
                "--homeserver",
                "--access-token",
                "--recovery-key",
                "--qr",
                "--show",
                "--no-browser",
                "--print-qr-base64",
                "--gen2-profile",
            ],
        ),
        ("demo", ["--auto", "--gen", "--roles", "--push", "--gen2-profile"]),
    ],
)
def test_help_describes_every_option(command: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])

    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert [option for option in options if option not in out] == []
    assert "examples:" in out


def test_showing_a_gen2_qr_without_a_homeserver_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["login", "--gen", "2", "--session-file", str(tmp_path / "s.json")]) == 2
    assert "--homeserver" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["login", "grant", "demo"])
def test_help_explains_the_gen2_profiles(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])

    out = " ".join(capsys.readouterr().out.split())
    assert "--gen2-profile {element-x,msc4388,vodozemac}" in out
    assert "element-x: Element X's Gen-2 branch" in out and "msc4388: the MSC text" in out


@pytest.mark.parametrize(
    ("name", "value"),
    [("element-x", "element-x"), ("msc4388", "msc4388"), ("msc", "msc4388"), ("vodozemac", "vodozemac")],
)
def test_gen2_profile_takes_the_names_and_the_old_alias(name: str, value: str) -> None:
    from qrlink_client.cli.login import gen2_profile

    assert gen2_profile(name).value == value


def test_an_unknown_gen2_profile_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["login", "--gen", "2", "--gen2-profile", "element_x", "--session-file", str(tmp_path / "s.json")])

    assert exit_info.value.code == 2
    assert "choose from element-x, msc4388, vodozemac" in capsys.readouterr().err


def test_a_gen2_profile_for_a_gen1_code_this_device_shows_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["login", "--rendezvous", "http://127.0.0.1:9/", "--gen2-profile", "msc4388"]

    assert main([*args, "--session-file", str(tmp_path / "s.json")]) == 2
    assert "--gen2-profile applies to Gen-2 only" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_showing_a_gen1_qr_with_no_way_to_find_a_rendezvous_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["login", "--gen", "1", "--session-file", str(tmp_path / "s.json")]) == 2


def test_login_refuses_to_replace_a_session_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = tmp_path / "s.json"
    session.write_text("{}")

    assert main(["login", "--rendezvous", "http://127.0.0.1:9/", "--session-file", str(session)]) == 1
    assert "SessionFileExists" in capsys.readouterr().err
    assert session.read_text() == "{}"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_homeserver_that_cannot_be_asked_for_its_rendezvous_fails_the_login(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    session = tmp_path / "s.json"

    status = main(["login", "--homeserver", f"http://127.0.0.1:{closed_port}/", "--session-file", str(session)])

    assert status == 1
    assert "RendezvousUnavailable" in capsys.readouterr().err


def test_a_failed_login_leaves_no_session_or_new_pickle_key_file(tmp_path: Path, closed_port: int) -> None:
    session = tmp_path / "s.json"

    main(["login", "--homeserver", f"http://127.0.0.1:{closed_port}/", "--session-file", str(session)])

    assert list(tmp_path.iterdir()) == []


def test_an_existing_pickle_key_file_is_kept_when_the_login_fails(tmp_path: Path, closed_port: int) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")

    main(
        [
            "login",
            "--homeserver",
            f"http://127.0.0.1:{closed_port}/",
            "--session-file",
            str(tmp_path / "s.json"),
            "--pickle-key-file",
            str(key_file),
        ]
    )

    assert key_file.read_text() == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"


def test_a_pickle_key_file_of_the_wrong_length_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("AAAA\n")

    status = main(
        [
            "login",
            "--rendezvous",
            "http://127.0.0.1:9/",
            "--session-file",
            str(tmp_path / "s.json"),
            "--pickle-key-file",
            str(key_file),
        ]
    )

    assert status == 1
    assert "InvalidPickleKey" in capsys.readouterr().err


def test_grant_without_an_access_token_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QRLINK_ACCESS_TOKEN", raising=False)

    assert main(["grant", "--homeserver", "http://127.0.0.1:9/", "--qr", "00"]) == 1
    assert "MissingCredentials" in capsys.readouterr().err


def test_grant_needs_either_a_qr_code_or_show(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["grant", "--homeserver", "http://127.0.0.1:9/"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("given", ["https://rz.example/", "https://rz.example", f"https://rz.example{GEN1_PATH}"])
def test_rendezvous_option_takes_a_server_or_its_create_url(given: str) -> None:
    assert gen1_create_url(given) == f"https://rz.example{GEN1_PATH}"


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Replace stdin by a pipe; the returned function types text into it and closes it."""
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, "r")
    monkeypatch.setattr("sys.stdin", stdin)

    def type_text(text: str) -> None:
        os.write(write_end, text.encode())
        os.close(write_end)

    yield type_text
    stdin.close()


async def test_check_code_prompt_asks_again_until_two_digits_are_typed(
    typed: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    typed("7\nab\n 42 \n")

    assert await check_code_prompt(Console())() == "42"
    assert capsys.readouterr().err.count("enter the check code shown on the other device: ") == 3


async def test_reading_past_the_end_of_stdin_raises_input_closed(typed: Callable[[str], None]) -> None:
    typed("only line\n")

    assert await stdin_line() == "only line"
    with pytest.raises(InputClosed):
        await stdin_line()


def _qr_ready(url: str) -> QrCodeReady:
    return QrCodeReady(qr=Gen1QrCode(bytes(32), Gen1Mode.LOGIN, url))


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], None]:
    """Set the terminal size the QR code is drawn for."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)

    def resize(columns: int, lines: int) -> None:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setenv("LINES", str(lines))

    return resize


def test_the_qr_code_is_drawn_last_black_on_white_and_fits_80x24(window: Callable[[int, int], None]) -> None:
    window(80, 24)
    stream = io.StringIO()
    ProgressPrinter(Console("[new]", stream), image_option="--qr-png")(
        _qr_ready("https://matrix-client.matrix.org/_synapse/client/rendezvous/01JD2ZQ8XN4S8B5F0W3E7K9M6R")
    )
    first, *code = stream.getvalue().splitlines()
    assert first.startswith("[new] QR code ready (128 bytes): scan it with the other device")
    assert len(code) == 23  # and the cursor on the 24th line
    assert all(line.startswith("\x1b[30;47m") and line.endswith("\x1b[0m") for line in code)


def test_a_qr_code_too_tall_for_the_window_comes_with_advice(window: Callable[[int, int], None]) -> None:
    window(80, 20)
    stream = io.StringIO()
    ProgressPrinter(Console("", stream), image_option="--qr-png")(_qr_ready("https://rz.example.org/" + "x" * 60))
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("the QR code needs 45 columns by 24 lines and this terminal has 80 by 20: enlarge the")
    assert last.endswith("or use --qr-png FILE and scan the image")


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_the_qr_code_is_drawn_without_colour_on_request(
    how: str, window: Callable[[int, int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    window(80, 24)
    if how == "environment":
        monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    ProgressPrinter(Console("", stream), color=False if how == "argument" else None)(
        _qr_ready("https://rz.example.org/x")
    )
    assert "\x1b" not in stream.getvalue()
    assert "\u2588" in stream.getvalue()


@pytest.mark.parametrize("command", [["login"], ["grant", "--homeserver", "https://hs.example", "--show"], ["demo"]])
def test_commands_that_draw_a_qr_code_take_no_color(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--no-color"])
    assert args.no_color is True


def test_terminal_size_prefers_columns_and_lines_then_falls_back_to_80x24(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "132")
    monkeypatch.setenv("LINES", "50")
    assert tuple(terminal_size(io.StringIO())) == (132, 50)
    monkeypatch.delenv("COLUMNS")
    monkeypatch.delenv("LINES")
    # Under pytest no standard stream is a terminal (output is captured, stdin is /dev/null).
    assert tuple(terminal_size(io.StringIO())) == (80, 24)


# --- progress lines ---------------------------------------------------------------------------------------------


def printed(steps: list[Progress], peer: str = "the desktop") -> list[str]:
    stream = io.StringIO()
    printer = ProgressPrinter(Console("[phone]", stream), peer=peer, show_qr=False)
    for step in steps:
        printer(step)
    return stream.getvalue().splitlines()


def test_the_existing_device_says_the_other_device_signed_in_and_leaves_the_url_to_the_opener() -> None:
    from qrlink_client.flow import SyncingSecrets, WaitingForAuth

    lines = printed([WaitingForAuth("http://127.0.0.1:1/link"), SyncingSecrets()])

    assert lines == [
        "[phone] the desktop asks to sign in to this account; approve it on the verification page",
        "[phone] the desktop is signed in; sending it the encryption secrets",
    ]


def test_the_new_device_says_it_signed_in() -> None:
    from qrlink_client.flow import SyncingSecrets, WaitingForToken

    lines = printed([WaitingForToken("ABCD1234", "http://127.0.0.1:1/link", None), SyncingSecrets()], "the phone")

    assert lines[0] == "[phone] waiting for approval; user code: ABCD1234"
    assert lines[-1] == "[phone] signed in; receiving the encryption secrets"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:8008/_matrix/client/rendezvous/abc", "127.0.0.1"),
        ("http://localhost:8008/", "localhost"),
        ("http://[::1]:8008/", "::1"),
        ("https://matrix.example.org/", None),
        ("https://192.0.2.7/", None),
    ],
)
def test_the_demo_notes_a_qr_code_that_points_at_loopback(url: str, host: str | None) -> None:
    from qrlink_client.cli.demo import _loopback_host

    qr = Gen1QrCode(bytes(32), Gen1Mode.LOGIN, url, None)

    assert _loopback_host(qr) == host


@pytest.mark.parametrize(
    ("profile", "expected"),
    [(None, []), ("element-x", ["Gen-2 channel profile: element-x"]), ("msc4388", ["Gen-2 channel profile: msc4388"])],
)
def test_progress_names_the_gen2_profile_before_the_check_code(profile: str | None, expected: list[str]) -> None:
    from qrlink_client.channel import CheckCode, HpkeProfile
    from qrlink_client.flow import EstablishingSecureChannel

    out = io.StringIO()
    chosen = None if profile is None else HpkeProfile.parse(profile)
    step = EstablishingSecureChannel(CheckCode.no_leading_zero(b"\x00\x07"), False, chosen)
    ProgressPrinter(Console(stream=out))(step)

    assert out.getvalue().splitlines()[:-1] == [*expected, "secure channel established; check code: 17"]
