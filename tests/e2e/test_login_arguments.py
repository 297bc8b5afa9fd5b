"""What the login drivers refuse before any network I/O (no server is needed: nothing is contacted)."""

from __future__ import annotations

import httpx
import pytest

from qrlink_client.e2ee import OlmDevice
from qrlink_client.login import ShowGen1, WrongQrCode, login_new_device
from qrlink_client.qr import Gen1Mode, Gen1QrCode, Gen2Intent, Gen2QrCode

# A syntactically valid session address; a refused QR code never leads to a request to it.
SESSION = "https://rendezvous.example/session/1"


def _ignore(_: object) -> None:
    return None


async def test_new_device_refuses_a_gen1_qr_shown_by_another_new_device() -> None:
    qr = Gen1QrCode(b"\x01" * 32, Gen1Mode.LOGIN, SESSION, None).to_bytes()

    async with httpx.AsyncClient() as http:
        with pytest.raises(WrongQrCode):
            await login_new_device(http, pickle_key=b"k" * 32, on_progress=_ignore, scanned=qr)


async def test_new_device_refuses_a_gen2_qr_shown_by_another_new_device() -> None:
    qr = Gen2QrCode(b"\x01" * 32, Gen2Intent.LOGIN, "abc", "https://hs.example").to_bytes()

    async with httpx.AsyncClient() as http:
        with pytest.raises(WrongQrCode):
            await login_new_device(http, pickle_key=b"k" * 32, on_progress=_ignore, scanned=qr)


async def test_showing_the_qr_without_a_check_code_prompt_is_refused() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="check_code_prompt"):
            await login_new_device(
                http, pickle_key=b"k" * 32, on_progress=_ignore, show=ShowGen1(SESSION), device=OlmDevice.generate()
            )


async def test_a_gen2_profile_with_a_code_this_device_shows_is_refused() -> None:
    from qrlink_client.channel import HpkeProfile
    from qrlink_client.login import ShowGen2

    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="ShowGen2"):
            await login_new_device(
                http,
                pickle_key=b"k" * 32,
                on_progress=_ignore,
                show=ShowGen2("https://hs.example"),
                gen2_profile=HpkeProfile.MSC,
                check_code_prompt=_never,
            )


async def test_a_legacy_u16_gen2_code_without_a_profile_is_refused_before_any_request() -> None:
    from qrlink_client.login import UnknownGen2Profile
    from qrlink_client.qr import Gen2Layout, decode_qr

    # Written with u8 lengths (the codec writes no u16/u16 code), then widened to the legacy u16/u16 layout.
    code = Gen2QrCode(b"\x01" * 32, Gen2Intent.RECIPROCATE, "abc", "https://hs.example")
    legacy = code.to_bytes().replace(b"\x03abc\x12", b"\x00\x03abc\x00\x12")
    assert decode_qr(legacy).layout is Gen2Layout.LEGACY_U16  # type: ignore[union-attr]

    async with httpx.AsyncClient() as http:
        with pytest.raises(UnknownGen2Profile):
            await login_new_device(http, pickle_key=b"k" * 32, on_progress=_ignore, scanned=legacy)


async def _never() -> str:
    raise AssertionError("not asked")
