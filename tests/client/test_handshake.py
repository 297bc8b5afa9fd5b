"""The secure-channel handshake of :mod:`qrlink_client.handshake`: both sides over real transports to our
rendezvous server, for both generations, and what is left behind when a side cannot be set up."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Literal

import httpx
import pytest

from qrlink_client.channel import DecryptionError, EciesChannel, HpkeChannel, HpkeProfile, InvalidKey, Role
from qrlink_client.handshake import (
    Handshake,
    ShowGen1,
    ShowGen2,
    ShowQr,
    UnknownGen2Profile,
    gen2_profile_of,
    open_rendezvous,
    scan_qr,
    show_qr,
)
from qrlink_client.qr import (
    Gen1Mode,
    Gen1QrCode,
    Gen2Intent,
    Gen2Layout,
    Gen2QrCode,
    InvalidField,
    QrPrefix,
    decode_qr,
)
from qrlink_client.transport import Gen1Transport, Gen2Transport, RetryPolicy, TransportOptions
from tests.support import transport as support
from tests.support.transport import OurServer

our_server = support.our_server

FAST = TransportOptions(poll_interval=0.05, push=False, retry=RetryPolicy(attempts=2, initial_delay=0.01))
BOTH_GENERATIONS = pytest.mark.parametrize("generation", [1, 2], ids=["gen1", "gen2"])


def show_request(server: OurServer, generation: Literal[1, 2]) -> ShowQr:
    return ShowGen1(server.gen1_create_url) if generation == 1 else ShowGen2(server.base_url)


async def both_complete(g: Handshake, s: Handshake) -> None:
    await asyncio.wait_for(asyncio.gather(g.complete(), s.complete()), 10)


@BOTH_GENERATIONS
async def test_the_shown_and_the_scanned_side_establish_one_channel(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g = await show_qr(http, show_request(our_server, generation), options=FAST)
    s = await scan_qr(http, decode_qr(g.qr.to_bytes()), options=FAST)
    assert not g.established and not s.established

    await both_complete(g, s)

    assert (g.generation, s.generation) == (generation, generation)
    assert (g.role, s.role) == (Role.GENERATOR, Role.SCANNER)
    assert g.established and s.established
    assert g.peer_public_key == s.channel.public_key and s.peer_public_key == g.channel.public_key
    assert g.channel.check_code == s.channel.check_code
    await g.aclose(delete=True)
    await s.aclose()


@BOTH_GENERATIONS
async def test_messages_are_sealed_and_opened_with_the_handshakes_tokens(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g = await show_qr(http, show_request(our_server, generation), options=FAST)
    s = await scan_qr(http, g.qr, options=FAST)
    await both_complete(g, s)

    for sender, receiver, text in ((s, g, b"protocols"), (g, s, b"protocol"), (s, g, b"success")):
        await sender.transport.send(sender.channel.encrypt(text, sequence_token=sender.seal_token))
        token = receiver.open_token  # the revision the peer wrote over: read before receiving
        message = await receiver.transport.receive(timeout=10)
        assert receiver.channel.decrypt(message, sequence_token=token) == text

    if generation == 1:  # nothing is bound into a Gen-1 AAD
        assert (g.seal_token, g.open_token, s.seal_token, s.open_token) == (None, None, None, None)
    await g.aclose(delete=True)
    await s.aclose()


async def test_the_qr_code_says_which_device_shows_it(http: httpx.AsyncClient, our_server: OurServer) -> None:
    new_device = await show_qr(http, ShowGen1(our_server.gen1_create_url), options=FAST)
    existing = await show_qr(
        http, ShowGen1(our_server.gen1_create_url), reciprocate=True, server_name="example.org", options=FAST
    )
    gen2 = await show_qr(http, ShowGen2(our_server.base_url, qr_prefix=QrPrefix.MATRIX), reciprocate=True, options=FAST)

    assert isinstance(new_device.qr, Gen1QrCode) and new_device.qr.mode is Gen1Mode.LOGIN
    assert isinstance(existing.qr, Gen1QrCode)
    assert (existing.qr.mode, existing.qr.server_name) == (Gen1Mode.RECIPROCATE, "example.org")
    assert isinstance(gen2.qr, Gen2QrCode)
    assert (gen2.qr.intent, gen2.qr.prefix, gen2.qr.base_url) == (
        Gen2Intent.RECIPROCATE,
        QrPrefix.MATRIX,
        our_server.base_url,
    )
    for handshake in (new_device, existing, gen2):
        assert handshake.qr.public_key == handshake.channel.public_key
        await handshake.aclose(delete=True)


async def test_fixed_keys_and_profile_make_the_channel_deterministic(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    g_secret, s_secret = bytes(range(32)), bytes(range(1, 33))
    g = await show_qr(
        http,
        ShowGen2(our_server.base_url, profile=HpkeProfile.VODOZEMAC),
        secret_key=g_secret,
        response_nonce=bytes(32),
        options=FAST,
    )
    s = await scan_qr(http, g.qr, secret_key=s_secret, profile=HpkeProfile.VODOZEMAC, options=FAST)
    await both_complete(g, s)

    assert g.channel.public_key == EciesChannel.generator(g_secret).public_key  # the same X25519 key pair
    assert s.channel.public_key == EciesChannel.scanner(s_secret).public_key
    assert isinstance(g.channel, HpkeChannel) and isinstance(s.channel, HpkeChannel)
    assert g.channel.profile is s.channel.profile is HpkeProfile.VODOZEMAC
    await g.aclose(delete=True)
    await s.aclose()


@BOTH_GENERATIONS
async def test_open_rendezvous_creates_for_a_show_request_and_joins_for_a_qr_code(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    created = await open_rendezvous(http, show_request(our_server, generation), options=FAST)
    channel = created.channel(Role.GENERATOR)
    qr = created.qr(channel.public_key, reciprocate=False)
    joined = await open_rendezvous(http, qr, options=FAST)

    kind = Gen1Transport if generation == 1 else Gen2Transport
    assert isinstance(created.transport, kind) and isinstance(joined.transport, kind)
    assert created.generation == joined.generation == qr.generation == generation
    await joined.transport.send("hello")
    assert await created.transport.receive(timeout=10) == "hello"
    await created.transport.delete()
    await joined.transport.aclose()


async def test_a_qr_code_that_cannot_be_made_deletes_the_new_session(
    http: httpx.AsyncClient, our_server: OurServer, recorder: support.RecordingTransport
) -> None:
    # A Gen-1 code shown by the signed-in device must name its server.
    with pytest.raises(InvalidField):
        await show_qr(http, ShowGen1(our_server.gen1_create_url), reciprocate=True, options=FAST)

    [created] = recorder.requests("POST")
    [deleted] = recorder.requests("DELETE")
    assert created.status in (200, 201) and deleted.status is not None and 200 <= deleted.status < 300


async def test_a_generator_channel_that_cannot_be_made_deletes_the_new_session(
    http: httpx.AsyncClient, our_server: OurServer, recorder: support.RecordingTransport
) -> None:
    with pytest.raises(InvalidKey):
        await show_qr(http, ShowGen2(our_server.base_url), secret_key=bytes(31), options=FAST)

    [created] = recorder.requests("POST")
    [deleted] = recorder.requests("DELETE")
    assert created.status in (200, 201) and deleted.status is not None and 200 <= deleted.status < 300


async def test_a_scanner_channel_that_cannot_be_made_leaves_the_session_to_its_creator(
    http: httpx.AsyncClient, our_server: OurServer, recorder: support.RecordingTransport
) -> None:
    g = await show_qr(http, ShowGen2(our_server.base_url), options=FAST)

    with pytest.raises(InvalidKey):
        await scan_qr(http, g.qr, secret_key=bytes(31), options=FAST)

    assert recorder.requests("DELETE") == []
    s = await scan_qr(http, g.qr, options=FAST)
    await both_complete(g, s)
    await g.aclose(delete=True)
    await s.aclose()


@BOTH_GENERATIONS
async def test_a_scanner_that_uses_another_key_fails_the_generator_with_decryption_error(
    http: httpx.AsyncClient, our_server: OurServer, generation: Literal[1, 2]
) -> None:
    g = await show_qr(http, show_request(our_server, generation), options=FAST)
    # A man in the middle's QR: the same session, another public key.
    stranger = EciesChannel.generator().public_key
    s = await scan_qr(http, dataclasses.replace(g.qr, public_key=stranger), options=FAST)
    scanning = asyncio.ensure_future(s.complete())

    with pytest.raises(DecryptionError):
        await asyncio.wait_for(g.complete(), 10)

    assert not g.established
    scanning.cancel()
    await asyncio.gather(scanning, return_exceptions=True)
    await g.aclose(delete=True)
    await s.aclose()


async def test_a_handshakes_repr_keeps_the_session_address_out(http: httpx.AsyncClient, our_server: OurServer) -> None:
    g = await show_qr(http, ShowGen2(our_server.base_url), options=FAST)

    assert isinstance(g.qr, Gen2QrCode) and g.qr.rendezvous_id not in repr(g)
    await g.aclose(delete=True)


# --- Gen-2 channel profiles ---------------------------------------------------------------------------------


async def test_a_gen2_code_is_shown_with_element_xs_profile_and_layout_by_default(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    g = await show_qr(http, ShowGen2(our_server.base_url + "/"), options=FAST)

    assert g.profile is HpkeProfile.ELEMENT_X
    assert isinstance(g.channel, HpkeChannel) and g.channel.profile is HpkeProfile.ELEMENT_X
    decoded = decode_qr(g.qr.to_bytes())
    assert isinstance(decoded, Gen2QrCode)
    # Element X's layout, and its encoder's trimmed root "/".
    assert (decoded.layout, decoded.base_url) == (Gen2Layout.ELEMENT_X, our_server.base_url)
    await g.aclose(delete=True)


@pytest.mark.parametrize(
    ("shown", "layout"),
    [
        (HpkeProfile.ELEMENT_X, Gen2Layout.ELEMENT_X),
        (HpkeProfile.MSC, Gen2Layout.MSC4388),
        (HpkeProfile.VODOZEMAC, Gen2Layout.MSC4388),
    ],
)
async def test_the_scanner_takes_the_profile_the_layout_implies(
    http: httpx.AsyncClient, our_server: OurServer, shown: HpkeProfile, layout: Gen2Layout
) -> None:
    # A root "/" in the shower's URL: element-x trims it from the code and both sides bind it back.
    g = await show_qr(http, ShowGen2(our_server.base_url + "/", profile=shown), options=FAST)
    scanned = decode_qr(g.qr.to_bytes())
    assert isinstance(scanned, Gen2QrCode) and scanned.layout is layout
    # vodozemac's labels share the text's layout, so its scanner has to be told.
    override = shown if shown is HpkeProfile.VODOZEMAC else None
    s = await scan_qr(http, scanned, profile=override, options=FAST)

    await both_complete(g, s)

    assert (g.profile, s.profile) == (shown, shown)
    assert g.channel.check_code == s.channel.check_code
    await g.aclose(delete=True)
    await s.aclose()


@pytest.mark.parametrize(
    ("shown", "scanning"),
    [(HpkeProfile.ELEMENT_X, HpkeProfile.MSC), (HpkeProfile.MSC, HpkeProfile.ELEMENT_X)],
    ids=["element-x-shows", "msc4388-shows"],
)
async def test_a_scanner_forced_onto_another_profile_fails_the_generator_with_decryption_error(
    http: httpx.AsyncClient, our_server: OurServer, shown: HpkeProfile, scanning: HpkeProfile
) -> None:
    g = await show_qr(http, ShowGen2(our_server.base_url + "/", profile=shown), options=FAST)
    s = await scan_qr(http, g.qr, profile=scanning, options=FAST)
    scanner = asyncio.ensure_future(s.complete())

    with pytest.raises(DecryptionError):
        await asyncio.wait_for(g.complete(), 10)

    scanner.cancel()
    await asyncio.gather(scanner, return_exceptions=True)
    await g.aclose(delete=True)
    await s.aclose()


def test_a_legacy_u16_code_implies_no_profile() -> None:
    code = Gen2QrCode(bytes(32), Gen2Intent.LOGIN, "id", "https://example.org", layout=Gen2Layout.LEGACY_U16)

    with pytest.raises(UnknownGen2Profile, match="element-x, msc4388 or vodozemac"):
        gen2_profile_of(code)


async def test_a_legacy_u16_code_is_refused_before_joining_unless_a_profile_is_named(
    http: httpx.AsyncClient, our_server: OurServer, recorder: support.RecordingTransport
) -> None:
    g = await show_qr(http, ShowGen2(our_server.base_url, profile=HpkeProfile.MSC), options=FAST)
    assert isinstance(g.qr, Gen2QrCode)
    legacy = dataclasses.replace(g.qr, layout=Gen2Layout.LEGACY_U16)
    gets_before = len(recorder.requests("GET"))

    with pytest.raises(UnknownGen2Profile):
        await scan_qr(http, legacy, options=FAST)

    assert len(recorder.requests("GET")) == gets_before
    s = await scan_qr(http, legacy, profile=HpkeProfile.MSC, options=FAST)
    await both_complete(g, s)
    await g.aclose(delete=True)
    await s.aclose()


async def test_send_and_receive_open_a_peer_that_writes_twice_in_a_row(
    http: httpx.AsyncClient, our_server: OurServer
) -> None:
    """The receiver binds the token current before the peer's write, which is not its own last write when the
    peer writes twice (a failure right after LoginOk): as Element X and the login driver do."""
    g = await show_qr(http, ShowGen2(our_server.base_url), options=FAST)
    s = await scan_qr(http, g.qr, options=FAST)
    await both_complete(g, s)

    await g.send(b"first")
    assert await s.receive(timeout=10) == b"first"
    await g.send(b"second")
    assert s.open_token != s.transport.own_sequence_token
    assert await s.receive(timeout=10) == b"second"
    await s.send(b"answer")
    assert await g.receive(timeout=10) == b"answer"
    await g.aclose(delete=True)
    await s.aclose()
