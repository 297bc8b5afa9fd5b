"""Rendering with segno and reading back with zxing-cpp: the payload survives byte for byte."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from qrlink_client.qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode, QrPrefix, decode_qr
from qrlink_client.qr.image import MultipleQrCodes, NoQrCodeFound, UnreadableImage, read_qr_image
from qrlink_client.qr.render import (
    TERMINAL_BORDER,
    make_symbol,
    render_png,
    render_svg,
    render_terminal,
    terminal_extent,
    terminal_symbol,
)
from tests.client._vectors import qr_login

# Keys chosen to hold 0x00 and bytes >= 0x80, which text-oriented readers garble.
KEY = bytes([0x00, 0xFF, 0x80, 0x00]) + bytes(range(0xE0, 0xFC))
GEN1 = Gen1QrCode(KEY, Gen1Mode.RECIPROCATE, "https://rv.example.org/_synapse/client/rendezvous/01ABC", "example.org")
GEN2 = Gen2QrCode(KEY, Gen2Intent.LOGIN, "01HX9K00Q1H6KPD47EG4G1T3XG", "https://matrix.example.org", QrPrefix.MATRIX)
PAYLOADS = {"gen1": GEN1.to_bytes(), "gen2": GEN2.to_bytes()}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_png_reads_back_identical_bytes(payload: bytes) -> None:
    assert read_qr_image(render_png(payload)) == payload


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_png_read_back_decodes_to_the_same_code(payload: bytes) -> None:
    assert decode_qr(read_qr_image(render_png(payload))) == decode_qr(payload)


def test_png_is_read_from_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "code.png"
    path.write_bytes(render_png(PAYLOADS["gen2"]))
    assert read_qr_image(path) == PAYLOADS["gen2"]


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_any_binary_payload_survives_png_round_trip(payload: bytes) -> None:
    assert read_qr_image(render_png(payload, scale=4)) == payload


def test_symbol_uses_byte_mode_and_error_correction_q() -> None:
    symbol = make_symbol(PAYLOADS["gen1"])
    assert (symbol.mode, symbol.error, symbol.is_micro) == ("byte", "Q", False)


def test_reader_sees_error_correction_level_q() -> None:
    image = Image.open(io.BytesIO(render_png(PAYLOADS["gen2"])))
    (barcode,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    extra = barcode.extra
    assert isinstance(extra, dict)
    assert extra["ECLevel"] == "Q"


def test_svg_is_an_svg_document_sized_by_scale_and_border() -> None:
    svg = render_svg(PAYLOADS["gen1"], scale=3, border=4)
    root = ET.fromstring(svg)
    modules = make_symbol(PAYLOADS["gen1"]).symbol_size(scale=1, border=4)[0]
    assert root.tag.endswith("svg")
    assert int(root.attrib["width"]) == modules * 3


# --- terminal -------------------------------------------------------------------------------------------------

VECTORS = qr_login()["qr"]
# A Gen-1 code as a new device shows it with matrix.org's rendezvous (Synapse's endpoint, an 86-character URL).
TYPICAL_GEN1 = Gen1QrCode(
    KEY, Gen1Mode.LOGIN, "https://matrix-client.matrix.org/_synapse/client/rendezvous/01JD2ZQ8XN4S8B5F0W3E7K9M6R"
).to_bytes()
REAL = {
    "gen1_typical": TYPICAL_GEN1,
    "gen1_login": bytes.fromhex(VECTORS["gen1_login"]["hex"]),
    "gen1_reciprocate": bytes.fromhex(VECTORS["gen1_reciprocate"]["hex"]),
    "gen2_stable": bytes.fromhex(VECTORS["gen2_stable_new_device"]["hex"]),
    "gen2_unstable": bytes.fromhex(VECTORS["gen2_unstable_existing_device"]["hex"]),
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TOP_DARK = {" ": False, "\u2580": True, "\u2584": False, "\u2588": True}
BOTTOM_DARK = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}


def _modules(text: str, *, ink_is_dark: bool = True) -> list[list[bool]]:
    """Read terminal text back into a module matrix (True = dark): each character is one module wide and two
    tall, its upper half the top module. ANSI colour codes are dropped."""
    rows: list[list[bool]] = []
    for line in ANSI.sub("", text).splitlines():
        rows.append([TOP_DARK[ch] == ink_is_dark for ch in line])
        rows.append([BOTTOM_DARK[ch] == ink_is_dark for ch in line])
    return rows


def _scan(modules: list[list[bool]], *, surround_dark: bool) -> bytes:
    """Rasterise a module matrix on a background (a dark or a light terminal) and decode it with zxing-cpp."""
    scale, margin = 6, 8
    width, height = len(modules[0]) + 2 * margin, len(modules) + 2 * margin
    image = Image.new("L", (width * scale, height * scale), 0 if surround_dark else 255)
    for y, row in enumerate(modules):
        for x, dark in enumerate(row):
            box = ((x + margin) * scale, (y + margin) * scale, (x + margin + 1) * scale, (y + margin + 1) * scale)
            image.paste(0 if dark else 255, box)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return read_qr_image(out.getvalue())


@pytest.mark.parametrize("surround_dark", [True, False], ids=["dark-terminal", "light-terminal"])
@pytest.mark.parametrize("payload", REAL.values(), ids=REAL.keys())
def test_coloured_terminal_code_scans_on_any_background(payload: bytes, surround_dark: bool) -> None:
    symbol = terminal_symbol(payload, max_columns=80, max_lines=23)
    text = render_terminal(symbol)
    assert _scan(_modules(text), surround_dark=surround_dark) == payload


@pytest.mark.parametrize("payload", REAL.values(), ids=REAL.keys())
def test_plain_terminal_code_scans_on_a_light_background(payload: bytes) -> None:
    text = render_terminal(terminal_symbol(payload, max_columns=80, max_lines=23), color=False)
    assert "\x1b" not in text
    assert _scan(_modules(text), surround_dark=False) == payload


def test_inverted_plain_terminal_code_scans_on_a_dark_background() -> None:
    text = render_terminal(REAL["gen2_stable"], color=False, invert=True)
    # On a dark terminal the blocks show light: ink is a light module.
    assert _scan(_modules(text, ink_is_dark=False), surround_dark=True) == REAL["gen2_stable"]


@pytest.mark.parametrize("color", [True, False])
def test_terminal_text_is_exactly_the_symbol_with_a_two_module_quiet_zone(color: bool) -> None:
    symbol = make_symbol(REAL["gen1_login"], error="L")
    expected = [[bool(module) for module in row] for row in symbol.matrix_iter(scale=1, border=TERMINAL_BORDER)]
    drawn = _modules(render_terminal(symbol, color=color))
    # The symbol is an odd number of modules tall: the last line's lower half is one more light row.
    assert drawn[:-1] == expected
    assert not any(drawn[-1])
    assert TERMINAL_BORDER == 2
    assert not any(drawn[0]) and not any(drawn[1]) and any(drawn[2])


def test_coloured_lines_are_black_on_white_and_reset_before_each_line_break() -> None:
    text = render_terminal(REAL["gen2_stable"])
    for line in text.splitlines():
        assert line.startswith("\x1b[30;47m")
        assert line.endswith("\x1b[0m")
        assert "\x1b" not in line[len("\x1b[30;47m") : -len("\x1b[0m")]


def test_terminal_rendering_uses_only_half_blocks_and_spaces() -> None:
    assert set(ANSI.sub("", render_terminal(PAYLOADS["gen1"]))) <= {" ", "\u2580", "\u2584", "\u2588", "\n"}


@pytest.mark.parametrize("url_length", [86, 92], ids=["matrix.org", "longest"])
def test_a_typical_gen1_code_fits_an_80x24_terminal(url_length: int) -> None:
    url = "https://matrix-client.matrix.org/_synapse/client/rendezvous/"
    payload = Gen1QrCode(KEY, Gen1Mode.LOGIN, url + "0" * (url_length - len(url))).to_bytes()
    symbol = terminal_symbol(payload, max_columns=80, max_lines=23)
    columns, lines = terminal_extent(symbol)
    text = render_terminal(symbol)
    assert (columns, lines) == (45, 23)
    assert len(text.splitlines()) == lines  # a 24th line is left for the cursor
    assert max(len(ANSI.sub("", line)) for line in text.splitlines()) == columns
    assert symbol.error == "L"
    assert _scan(_modules(text), surround_dark=True) == payload


def test_a_gen1_code_with_a_longer_url_does_not_fit_80x24() -> None:
    # 93 characters make 135 bytes, one more than version 6-L holds; the next version is 25 lines tall.
    url = "https://matrix-client.matrix.org/_synapse/client/rendezvous/"
    payload = Gen1QrCode(KEY, Gen1Mode.LOGIN, url + "0" * (93 - len(url))).to_bytes()
    assert terminal_extent(terminal_symbol(payload, max_columns=80, max_lines=23)) == (49, 25)


@pytest.mark.parametrize("payload", REAL.values(), ids=REAL.keys())
def test_every_real_payload_fits_an_80x24_terminal(payload: bytes) -> None:
    columns, lines = terminal_extent(terminal_symbol(payload, max_columns=80, max_lines=23))
    assert columns <= 80 and lines <= 23


def test_terminal_error_correction_is_q_when_there_is_room_and_lower_only_as_needed() -> None:
    payload = REAL["gen2_stable"]
    assert terminal_symbol(payload).error == "Q"
    assert terminal_symbol(payload, max_columns=200, max_lines=200).error == "Q"
    q_lines = terminal_extent(make_symbol(payload, error="Q"))[1]
    m_lines = terminal_extent(make_symbol(payload, error="M"))[1]
    assert q_lines > m_lines
    assert terminal_symbol(payload, max_lines=m_lines).error == "M"
    assert terminal_symbol(payload, max_lines=m_lines - 1).error == "L"


def test_a_payload_too_big_for_the_window_gets_the_smallest_symbol() -> None:
    payload = Gen1QrCode(KEY, Gen1Mode.LOGIN, "https://rz.example.org/" + "x" * 120).to_bytes()
    symbol = terminal_symbol(payload, max_columns=80, max_lines=23)
    assert symbol.error == "L"
    assert terminal_extent(symbol)[1] > 23


def test_non_image_bytes_are_unreadable_image() -> None:
    with pytest.raises(UnreadableImage):
        read_qr_image(b"not an image")


def test_missing_file_is_unreadable_image(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage):
        read_qr_image(tmp_path / "absent.png")


def test_blank_image_has_no_qr_code() -> None:
    out = io.BytesIO()
    Image.new("L", (200, 200), 255).save(out, format="PNG")
    with pytest.raises(NoQrCodeFound):
        read_qr_image(out.getvalue())


def test_two_different_codes_in_one_image_are_ambiguous() -> None:
    left = Image.open(io.BytesIO(render_png(PAYLOADS["gen1"], scale=4)))
    right = Image.open(io.BytesIO(render_png(PAYLOADS["gen2"], scale=4)))
    both = Image.new("L", (left.width + right.width, max(left.height, right.height)), 255)
    both.paste(left.convert("L"), (0, 0))
    both.paste(right.convert("L"), (left.width, 0))
    out = io.BytesIO()
    both.save(out, format="PNG")
    with pytest.raises(MultipleQrCodes):
        read_qr_image(out.getvalue())
