"""A server that breaks the protocol gets a named :class:`RendezvousProtocolError`, never a crash or a hang.

No real server misbehaves on purpose, so :func:`broken_server` is a tiny ASGI app under real uvicorn whose every
answer violates one rule (a mock of what cannot be had otherwise: a non-conforming server).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qrlink_client.transport import (
    CreateNotAvailable,
    Gen1Transport,
    Gen2Transport,
    RendezvousProtocolError,
    RendezvousUnavailable,
    RetryPolicy,
    TransportOptions,
)
from rendezvous.protocol import GEN2_UNSTABLE_PATH
from tests.support.transport import UvicornThread

OPTIONS = TransportOptions(poll_interval=0.05, retry=RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02))


async def gen1_create(request: Request) -> Response:
    return JSONResponse({"url": f"{request.base_url}g1/{request.query_params.get('kind', 'ok')}"}, 201)


async def gen1_session(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "no-etag":
        return Response("payload", 200, media_type="text/plain")
    if kind == "json":
        return JSONResponse({"data": "payload"}, headers={"ETag": '"1"'})
    if kind == "put-no-etag" and request.method == "PUT":
        return Response(status_code=202)
    return Response("", 200, headers={"ETag": '"1"'}, media_type="text/plain")


async def gen2_collection(request: Request) -> Response:
    if request.method == "GET":
        return JSONResponse({"create_available": "yes"})
    return Response("not json", 200, media_type="application/json")


async def always_503(request: Request) -> Response:
    return JSONResponse({"errcode": "M_UNKNOWN"}, 503)


async def forbidden(request: Request) -> Response:
    return JSONResponse({"errcode": "M_FORBIDDEN"}, 403)


@pytest.fixture(scope="module")
def broken_server() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/g1", gen1_create, methods=["POST"]),
            Route("/g1/{kind}", gen1_session, methods=["GET", "PUT"]),
            Route(GEN2_UNSTABLE_PATH, gen2_collection, methods=["GET", "POST"]),
            Route("/down", always_503, methods=["POST"]),
            Route("/forbidden" + GEN2_UNSTABLE_PATH, forbidden, methods=["GET", "POST"]),
        ]
    )
    with UvicornThread(app) as server:
        yield server.base_url


async def test_gen1_200_without_etag_is_a_protocol_error(http: httpx.AsyncClient, broken_server: str) -> None:
    transport = await Gen1Transport.join(http, f"{broken_server}/g1/no-etag", options=OPTIONS)

    with pytest.raises(RendezvousProtocolError, match="ETag"):
        await transport.receive(timeout=2)


async def test_gen1_200_that_is_not_text_plain_is_a_protocol_error(http: httpx.AsyncClient, broken_server: str) -> None:
    transport = await Gen1Transport.join(http, f"{broken_server}/g1/json", options=OPTIONS)

    with pytest.raises(RendezvousProtocolError, match="text/plain"):
        await transport.receive(timeout=2)


async def test_gen1_put_without_a_new_etag_is_a_protocol_error(http: httpx.AsyncClient, broken_server: str) -> None:
    transport = await Gen1Transport.join(http, f"{broken_server}/g1/put-no-etag", options=OPTIONS)

    with pytest.raises(RendezvousProtocolError, match="ETag"):
        await transport.send("payload")


async def test_gen2_discovery_with_a_non_boolean_is_a_protocol_error(
    http: httpx.AsyncClient, broken_server: str
) -> None:
    with pytest.raises(RendezvousProtocolError, match="create_available"):
        await Gen2Transport.discover(http, broken_server)


async def test_gen2_create_answering_bad_json_is_a_protocol_error(http: httpx.AsyncClient, broken_server: str) -> None:
    with pytest.raises(RendezvousProtocolError, match="JSON"):
        await Gen2Transport.create(http, broken_server, options=OPTIONS)


async def test_gen2_create_forbidden_is_create_not_available(http: httpx.AsyncClient, broken_server: str) -> None:
    with pytest.raises(CreateNotAvailable) as caught:
        await Gen2Transport.create(http, f"{broken_server}/forbidden", options=OPTIONS)

    assert (caught.value.status, caught.value.errcode) == (403, "M_FORBIDDEN")


async def test_gen2_discovery_forbidden_means_create_not_available(http: httpx.AsyncClient, broken_server: str) -> None:
    discovery = await Gen2Transport.discover(http, f"{broken_server}/forbidden")

    assert discovery.create_available is False


async def test_persistent_5xx_ends_in_rendezvous_unavailable(http: httpx.AsyncClient, broken_server: str) -> None:
    with pytest.raises(RendezvousUnavailable, match="503"):
        await Gen1Transport.create(http, f"{broken_server}/down", options=OPTIONS)


async def test_error_messages_carry_no_session_url(http: httpx.AsyncClient, broken_server: str) -> None:
    url = f"{broken_server}/g1/no-etag"
    transport = await Gen1Transport.join(http, url, options=OPTIONS)

    with pytest.raises(RendezvousProtocolError) as caught:
        await transport.receive(timeout=2)

    assert url not in str(caught.value) and "no-etag" not in str(caught.value)
