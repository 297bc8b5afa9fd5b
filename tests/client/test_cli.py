"""The ``qrlink`` command line: subcommands, QR utilities, exit statuses."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrlink_client import __version__
from qrlink_client.cli import main
from tests.client._vectors import qr_login

QRLINK = Path(sys.executable).with_name("qrlink")
GEN2_HEX = qr_login()["qr"]["gen2_unstable_existing_device"]["hex"]
GEN1_HEX = qr_login()["qr"]["gen1_reciprocate"]["hex"]


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
    assert lines["generation"] == "1"
    assert lines["mode"] == "4"
    assert lines["server_name"] == "matrix.org"


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
        "hex": GEN2_HEX,
    }


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


def test_qr_render_terminal_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "render", GEN2_HEX]) == 0
    assert "\u2588" in capsys.readouterr().out


def test_qr_render_writes_png_and_svg_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    assert main(["qr", "render", GEN2_HEX, "--png", str(png), "--svg", str(svg)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in svg.read_text()
    assert capsys.readouterr().out == ""


def test_qr_render_rejects_text_that_is_not_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "render", "xyz"]) == 1
    assert "UnrecognisedInput" in capsys.readouterr().err


def test_qr_render_into_a_missing_folder_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "render", GEN2_HEX, "--png", str(tmp_path / "no" / "a.png")]) == 1
    assert capsys.readouterr().err.startswith("qrlink: ")


def test_peer_subcommand_serves_json_lines() -> None:
    result = subprocess.run(
        [str(QRLINK), "peer"], input=b'{"op":"hello"}\n', capture_output=True, check=True, timeout=30
    )
    assert json.loads(result.stdout)["implementation"] == "qrlink"
