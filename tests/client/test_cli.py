"""The ``qrlink`` command line: subcommands, QR utilities, exit statuses."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrlink_client import __version__
from qrlink_client.cli import main
from qrlink_client.cli.qr_input import UnrecognisedInput, existing_file, read_qr_input
from qrlink_client.qr import Gen1Mode, Gen1QrCode, Gen2Layout, decode_qr
from tests.client._vectors import qr_login

QRLINK = Path(sys.executable).with_name("qrlink")
GEN2_HEX = qr_login()["qr"]["gen2_unstable_existing_device"]["hex"]
GEN1_HEX = qr_login()["qr"]["gen1_reciprocate"]["hex"]
# A Gen-1 code on our rendezvous server: its create URL plus a 32-character session id.
LONG_GEN1 = Gen1QrCode(
    bytes([0xFB, 0xEF, 0xFF] * 10 + [0xFB, 0xEF]),  # base64 of these bytes holds + and / (URL-safe: - and _)
    Gen1Mode.LOGIN,
    "https://matrix.example.org/_matrix/client/unstable/org.matrix.msc4108/rendezvous/Xk3dP0q9mVbT7wYz1LrN5sAe8HjC2uGf",
)
LONG_GEN1_HEX = LONG_GEN1.to_bytes().hex()


def test_console_script_prints_its_version() -> None:
    result = subprocess.run([str(QRLINK), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"qrlink {__version__}"


def test_module_entry_point_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qrlink_client", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"qrlink {__version__}"


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "peer" in out and "qr" in out


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_qr_decode_prints_the_fields_of_a_hex_payload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", GEN1_HEX]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["generation"] == "1 (MSC4108)"
    assert lines["mode"] == "reciprocate (0x04, existing device shows it)"
    assert lines["server_name"] == "matrix.org"


@pytest.mark.parametrize(
    ("vector", "field", "shown"),
    [
        ("gen1_login", "mode", "login (0x03, new device shows it)"),
        ("gen1_reciprocate", "mode", "reciprocate (0x04, existing device shows it)"),
        ("gen2_stable_new_device", "intent", "login (0x00, new device shows it)"),
        ("gen2_unstable_existing_device", "intent", "reciprocate (0x01, existing device shows it)"),
    ],
)
def test_qr_decode_names_the_mode_or_intent(
    vector: str, field: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "decode", qr_login()["qr"][vector]["hex"]]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines[field] == shown


def test_qr_decode_json_keeps_the_numeric_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", "--json", GEN1_HEX]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == 4


def test_qr_decode_takes_a_real_gen1_payload_longer_than_a_file_name(capsys: pytest.CaptureFixture[str]) -> None:
    # The hex of a code on our rendezvous server is over 300 characters: looking it up as a file would fail
    # with ENAMETOOLONG.
    assert len(LONG_GEN1_HEX) > 300
    assert main(["qr", "decode", "--json", LONG_GEN1_HEX]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["rendezvous_url"] == LONG_GEN1.rendezvous_url


@pytest.mark.parametrize("spelling", ["padded", "unpadded", "url-safe padded", "url-safe unpadded", "wrapped"])
def test_qr_decode_takes_every_base64_spelling(spelling: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytes.fromhex(LONG_GEN1_HEX)
    text = base64.urlsafe_b64encode(data).decode() if "url-safe" in spelling else base64.b64encode(data).decode()
    if "unpadded" in spelling:
        text = text.rstrip("=")
    if spelling == "wrapped":
        text = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert ("-" in text or "_" in text) if "url-safe" in spelling else ("+" in text or "/" in text)
    assert main(["qr", "decode", "--json", text]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == LONG_GEN1_HEX


@pytest.mark.parametrize("content", ["raw", "hex", "base64"])
def test_qr_decode_reads_a_file_of_payload_bytes_or_text(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytes.fromhex(LONG_GEN1_HEX)
    path = tmp_path / "payload"
    path.write_bytes({"raw": data, "hex": (LONG_GEN1_HEX + "\n").encode(), "base64": base64.b64encode(data)}[content])
    assert main(["qr", "decode", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == LONG_GEN1_HEX


def test_qr_decode_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    encoded = base64.b64encode(bytes.fromhex(GEN2_HEX)) + b"\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(encoded)))
    assert main(["qr", "decode", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == GEN2_HEX


def test_an_existing_file_wins_over_text_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("beef").write_bytes(bytes.fromhex(GEN2_HEX))  # "beef" is also hex
    assert main(["qr", "decode", "--json", "beef"]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == GEN2_HEX


def test_qr_decode_of_a_missing_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "code.png"
    assert main(["qr", "decode", str(missing)]) == 1
    assert capsys.readouterr().err.startswith(f"qrlink: UnrecognisedInput: no such file: {missing}")


def test_qr_decode_of_a_folder_or_an_empty_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"qrlink: UnrecognisedInput: {tmp_path} is a directory, not a file\n"
    (tmp_path / "empty").touch()
    assert main(["qr", "decode", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err == f"qrlink: UnrecognisedInput: the file {tmp_path / 'empty'} is empty\n"


@pytest.mark.parametrize("argument", ["code.png" * 40, "dir./" * 1000, "ab\x00cd.png", "é" * 200])
def test_arguments_that_cannot_be_paths_are_never_looked_up(argument: str) -> None:
    assert existing_file(argument) is None
    with pytest.raises(UnrecognisedInput):
        read_qr_input(argument)


def test_qr_decode_json_gives_the_peer_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", "--json", GEN2_HEX]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields == {
        "generation": 2,
        "prefix": "IO_ELEMENT_MSC4388",
        "public_key_b64": qr_login()["qr"]["public_key_b64"],
        "intent": 1,
        "rendezvous_id": "e8da6355-550b-4a32-a193-1619d9830668",
        "base_url": "https://matrix-client.matrix.org",
        "profile": "msc4388",
        "hex": GEN2_HEX,
    }


def test_qr_decode_names_the_profile_an_element_x_layout_implies(capsys: pytest.CaptureFixture[str]) -> None:
    code = decode_qr(bytes.fromhex(GEN2_HEX))
    element_x = dataclasses.replace(code, layout=Gen2Layout.ELEMENT_X).to_bytes().hex()
    assert main(["qr", "decode", element_x]) == 0
    assert "profile         element-x" in capsys.readouterr().out
    assert main(["qr", "decode", "--json", element_x]) == 0
    assert json.loads(capsys.readouterr().out)["profile"] == "element-x"


def test_qr_decode_accepts_base64(capsys: pytest.CaptureFixture[str]) -> None:
    encoded = base64.b64encode(bytes.fromhex(GEN2_HEX)).decode()
    assert main(["qr", "decode", "--json", encoded]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == GEN2_HEX


def test_qr_decode_reads_a_rendered_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "code.png"
    assert main(["qr", "render", GEN1_HEX, "--png", str(image)]) == 0
    capsys.readouterr()
    assert main(["qr", "decode", "--json", str(image)]) == 0
    assert json.loads(capsys.readouterr().out)["hex"] == GEN1_HEX


def test_qr_decode_of_an_invalid_payload_names_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", qr_login()["qr"]["invalid"]["bad_prefix"]]) == 1
    assert capsys.readouterr().err.startswith("qrlink: InvalidPrefix: ")


def test_qr_decode_of_unrecognised_text_names_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", "not a payload!"]) == 1
    assert capsys.readouterr().err.startswith("qrlink: UnrecognisedInput: ")


@pytest.fixture
def terminal_80x24(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)


def test_qr_render_terminal_is_the_default(terminal_80x24: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "render", GEN2_HEX]) == 0
    captured = capsys.readouterr()
    assert "\u2588" in captured.out
    assert captured.out.startswith("\x1b[30;47m")  # black on white, right on any background
    assert len(captured.out.splitlines()) <= 23
    assert captured.err == ""


def test_qr_render_of_base64_draws_the_same_code_as_hex(
    terminal_80x24: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "render", GEN1_HEX]) == 0
    from_hex = capsys.readouterr().out
    assert main(["qr", "render", base64.b64encode(bytes.fromhex(GEN1_HEX)).decode()]) == 0
    assert capsys.readouterr().out == from_hex


def test_qr_render_reads_stdin(
    terminal_80x24: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "render", GEN2_HEX]) == 0
    from_argument = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(GEN2_HEX.encode() + b"\n")))
    assert main(["qr", "render", "-"]) == 0
    assert capsys.readouterr().out == from_argument


@pytest.mark.parametrize("how", ["option", "environment"])
def test_qr_render_without_colour(
    how: str, terminal_80x24: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "environment":
        monkeypatch.setenv("NO_COLOR", "1")
    assert main(["qr", "render", GEN2_HEX, *(["--no-color"] if how == "option" else [])]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u2588" in out


def test_qr_render_says_when_the_code_does_not_fit_the_terminal(
    terminal_80x24: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "render", LONG_GEN1_HEX]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) > 23
    assert "enlarge the window" in captured.err
    assert "--png FILE" in captured.err


def test_qr_render_uses_the_room_a_taller_terminal_has(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "60")
    assert main(["qr", "render", LONG_GEN1_HEX]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) <= 59


def test_qr_render_writes_png_and_svg_files_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    assert main(["qr", "render", GEN2_HEX, "--png", str(png), "--svg", str(svg), "--scale", "4"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in svg.read_text()
    captured = capsys.readouterr()
    assert captured.out == ""
    png_line, svg_line = captured.err.splitlines()
    # 122 bytes at level Q make version 9, 53 modules; with a quiet zone of 4 on each side, 61 of 4 pixels.
    assert png_line == f"wrote {png}: PNG, 244x244 px, 53x53 modules, error correction Q, {png.stat().st_size} bytes"
    assert svg_line.startswith(f"wrote {svg}: SVG, 244x244 px, ")
    assert svg_line.endswith(f", {svg.stat().st_size} bytes")


def test_qr_render_rejects_text_that_is_not_a_payload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "render", "xyz!"]) == 1
    assert "UnrecognisedInput" in capsys.readouterr().err


def test_qr_render_into_a_missing_folder_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "render", GEN2_HEX, "--png", str(tmp_path / "no" / "a.png")]) == 1
    assert capsys.readouterr().err.startswith("qrlink: ")


def test_a_closed_stdout_pipe_ends_qrlink_silently() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as after `| head` has finished
    try:
        result = subprocess.run(
            [str(QRLINK), "qr", "decode", LONG_GEN1_HEX], stdout=write_end, stderr=subprocess.PIPE, timeout=30
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == b""


def test_a_broken_pipe_while_writing_is_exit_status_141_with_no_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["qr", "decode", GEN1_HEX]) == 141
    assert capsys.readouterr().err == ""


def test_peer_subcommand_serves_json_lines() -> None:
    result = subprocess.run(
        [str(QRLINK), "peer"], input=b'{"op":"hello"}\n', capture_output=True, check=True, timeout=30
    )
    assert json.loads(result.stdout)["implementation"] == "qrlink"
