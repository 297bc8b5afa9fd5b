"""Rendering with segno and reading back with zxing-cpp: the payload survives byte for byte."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from qrlink_client.qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode, QrPrefix, decode_qr
from qrlink_client.qr.image import MultipleQrCodes, NoQrCodeFound, UnreadableImage, read_qr_image
from qrlink_client.qr.render import make_symbol, render_png, render_svg, render_terminal

# Keys chosen to hold 0x00 and bytes >= 0x80, which text-oriented readers garble.
KEY = bytes([0x00, 0xFF, 0x80, 0x00]) + bytes(range(0xE0, 0xFC))
GEN1 = Gen1QrCode(
    KEY, Gen1Mode.RECIPROCATE, "https://rv.example.org/_synapse/client/rendezvous/01ABC", "example.org"
)
GEN2 = Gen2QrCode(
    KEY, Gen2Intent.LOGIN, "01HX9K00Q1H6KPD47EG4G1T3XG", "https://matrix.example.org", QrPrefix.MATRIX
)
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


def _terminal_to_image(text: str, invert: bool) -> Image.Image:
    """Rasterise half-block text: each character is one module wide and two modules tall."""
    top_ink = {" ": False, "\u2580": True, "\u2584": False, "\u2588": True}
    bottom_ink = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}
    rows: list[list[bool]] = []
    for line in text.splitlines():
        rows.append([top_ink[ch] for ch in line])
        rows.append([bottom_ink[ch] for ch in line])
    scale = 6
    image = Image.new("L", (len(rows[0]) * scale, len(rows) * scale), 255)
    for y, row in enumerate(rows):
        for x, inked in enumerate(row):
            dark = inked != invert
            if dark:
                image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    return image


@pytest.mark.parametrize("invert", [True, False])
def test_terminal_rendering_reads_back_identical_bytes(invert: bool) -> None:
    text = render_terminal(PAYLOADS["gen2"], invert=invert)
    out = io.BytesIO()
    _terminal_to_image(text, invert).save(out, format="PNG")
    assert read_qr_image(out.getvalue()) == PAYLOADS["gen2"]


def test_terminal_rendering_uses_only_half_blocks_and_spaces() -> None:
    assert set(render_terminal(PAYLOADS["gen1"])) <= {" ", "\u2580", "\u2584", "\u2588", "\n"}


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
