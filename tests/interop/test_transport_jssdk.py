"""Our Gen-1 transport + EciesChannel on one side, matrix-js-sdk (Element Web's MSC4108RendezvousSession +
MSC4108SecureChannel, driven in Node) on the other, through our server and through Synapse's rendezvous."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qrlink_client.channel import EciesChannel
from qrlink_client.qr import Gen1Mode, Gen1QrCode, decode_qr
from qrlink_client.transport import Gen1Transport, RetryPolicy, SessionNotFound, TransportOptions
from tests.peers.node import NodeDriver, NodeDriverFactory
from tests.peers.synapse import SynapseServer
from tests.support import transport as support

pytestmark = [pytest.mark.node]

# Fixture shared with the client transport tests.
our_server = support.our_server

OPTIONS = TransportOptions(poll_interval=0.2, retry=RetryPolicy(attempts=4, initial_delay=0.05))
TO_OURS: dict[str, Any] = {"type": "m.login.protocols", "protocols": ["device_authorization_grant"]}
TO_JSSDK: dict[str, Any] = {"type": "m.login.protocol", "protocol": "device_authorization_grant"}


@pytest.fixture(params=["ours", pytest.param("synapse", marks=pytest.mark.synapse)])
def create_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Gen-1 create endpoint of our server or of Synapse."""
    if request.param == "ours":
        server: support.OurServer = request.getfixturevalue("our_server")
        yield server.gen1_create_url
    else:
        synapse: SynapseServer = request.getfixturevalue("synapse")
        yield synapse.gen1_create_url


async def call(driver: NodeDriver, op: str, **fields: Any) -> dict[str, Any]:
    """Run a driver command off the event loop (the driver API blocks)."""
    return await asyncio.to_thread(driver.call, op, **fields)


async def wait(driver: NodeDriver, future: Any) -> dict[str, Any]:
    return await asyncio.to_thread(driver.wait, future)


async def send_json(transport: Gen1Transport, channel: EciesChannel, payload: dict[str, Any]) -> None:
    await transport.send(channel.encrypt(json.dumps(payload).encode()))


async def receive_json(transport: Gen1Transport, channel: EciesChannel) -> Any:
    return json.loads(channel.decrypt(await transport.receive(timeout=20)))


async def test_jssdk_generator_and_our_scanner_agree_and_exchange_payloads(
    node_driver: NodeDriverFactory, create_url: str
) -> None:
    jssdk = node_driver("jssdk")
    await call(jssdk, "create", fallback_rz_server=create_url)
    qr = decode_qr(bytes.fromhex((await call(jssdk, "generate_code", mode="Login"))["hex"]))
    assert isinstance(qr, Gen1QrCode)
    jssdk_connected = jssdk.submit("connect")  # js-sdk polls until our LoginInitiateMessage arrives

    async with httpx.AsyncClient(timeout=10) as http:
        ours = await Gen1Transport.join(http, qr.rendezvous_url, options=OPTIONS)
        channel = EciesChannel.scanner()
        await ours.send(channel.initiate(qr.public_key))
        channel.accept_ok(await ours.receive(timeout=20))
        jssdk_code = (await wait(jssdk, jssdk_connected))["check_code"]

        jssdk_received = jssdk.submit("secure_receive")
        await send_json(ours, channel, TO_JSSDK)
        assert (await wait(jssdk, jssdk_received))["payload"] == TO_JSSDK
        await call(jssdk, "secure_send", payload=TO_OURS)
        assert await receive_json(ours, channel) == TO_OURS

    assert jssdk_code == channel.check_code.digits


async def test_our_generator_and_jssdk_scanner_agree_and_exchange_payloads(
    node_driver: NodeDriverFactory, create_url: str
) -> None:
    jssdk = node_driver("jssdk")
    async with httpx.AsyncClient(timeout=10) as http:
        ours = await Gen1Transport.create(http, create_url, options=OPTIONS)
        channel = EciesChannel.generator()
        qr = Gen1QrCode(channel.public_key, Gen1Mode.RECIPROCATE, ours.url, "localhost")
        await call(jssdk, "scan", qr_hex=qr.to_bytes().hex())
        jssdk_connected = jssdk.submit("connect")  # js-sdk PUTs LoginInitiate, then polls for LoginOk

        channel.accept_initiate(await ours.receive(timeout=20))
        await ours.send(channel.ok_message())
        jssdk_code = (await wait(jssdk, jssdk_connected))["check_code"]

        await call(jssdk, "secure_send", payload=TO_OURS)
        assert await receive_json(ours, channel) == TO_OURS
        jssdk_received = jssdk.submit("secure_receive")
        await send_json(ours, channel, TO_JSSDK)
        assert (await wait(jssdk, jssdk_received))["payload"] == TO_JSSDK

    assert jssdk_code == channel.check_code.digits


async def test_jssdk_cancel_ends_our_receive_with_session_not_found(
    node_driver: NodeDriverFactory, create_url: str
) -> None:
    jssdk = node_driver("jssdk")
    url = (await call(jssdk, "create", fallback_rz_server=create_url))["url"]
    async with httpx.AsyncClient(timeout=10) as http:
        ours = await Gen1Transport.join(http, url, options=OPTIONS)
        await ours.send("not a handshake, just traffic")
        receiving = asyncio.create_task(ours.receive(timeout=20))
        await asyncio.sleep(0.5)

        await call(jssdk, "close")  # MSC4108SecureChannel.close → DELETE

        with pytest.raises(SessionNotFound):
            await receiving
