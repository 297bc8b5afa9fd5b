"""The route table: the Allow headers, metrics route names and OpenAPI operations it gives the server."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from rendezvous.app import create_app
from rendezvous.config import Settings
from rendezvous.openapi import build_openapi
from rendezvous.router import Router
from rendezvous.routes import MOUNTS, OTHER, ROUTE_NAMES, Mount, Operation, Resource, mounted
from rendezvous.store import MemoryStore

from .helpers import GEN1, GEN2, GEN2_STABLE

EVERYTHING = Settings(gen2_stable_api=True)


def _allow(path: str, method: str) -> tuple[int, str | None]:
    """Status and Allow header of ``method path`` on an app with every API mounted."""
    app = create_app(EVERYTHING, store=MemoryStore())
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def call() -> None:
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "headers": []}
        await app(scope, receive, send)
        await app.aclose()

    asyncio.run(call())
    allow = dict(sent[0]["headers"]).get(b"allow")
    return sent[0]["status"], None if allow is None else allow.decode()


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (GEN1, "POST, OPTIONS"),
        (f"{GEN1}/abc", "GET, HEAD, PUT, DELETE, OPTIONS"),
        (GEN2, "GET, HEAD, POST, OPTIONS"),
        (f"{GEN2}/abc", "GET, HEAD, PUT, DELETE, OPTIONS"),
        (f"{GEN2}/abc/txn", "PUT, OPTIONS"),
        (f"{GEN2_STABLE}/abc/txn", "PUT, OPTIONS"),
        ("/health", "GET, HEAD"),
        ("/_rendezvous/openapi.json", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
    ],
)
def test_a_refused_method_gets_405_with_every_method_of_the_resource(path: str, allow: str) -> None:
    assert _allow(path, "PATCH") == (405, allow)


def test_route_names_are_every_operation_and_long_poll_once_with_other_last() -> None:
    expected = {OTHER}
    for mount in MOUNTS:
        for resource in mount.resources:
            for operation in resource.operations:
                expected.add(operation.route)
                if operation.long_poll_route is not None:
                    expected.add(operation.long_poll_route)
                if operation.hold_route is not None:
                    expected.add(operation.hold_route)
    assert len(ROUTE_NAMES) == len(set(ROUTE_NAMES))
    assert set(ROUTE_NAMES) == expected
    assert ROUTE_NAMES[-1] == OTHER
    assert {"gen1.long_poll", "gen2.long_poll", "preflight"} <= expected


def test_the_document_lists_exactly_the_documented_operations_of_the_mounted_table() -> None:
    document = build_openapi(EVERYTHING)
    listed = {
        (path, method, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    expected = {
        (
            mount.prefix + resource.template,
            operation.methods[0].lower(),
            mount.operation_prefix + operation.operation_id,
        )
        for mount in mounted(EVERYTHING)
        for resource in mount.resources
        for operation in resource.operations
        if operation.operation_id is not None
    }
    assert listed == expected
    assert len({operation_id for _, _, operation_id in listed}) == len(listed)


def test_two_resources_with_the_same_parameter_count_are_refused() -> None:
    get = Operation(("GET",), "get", "gen1.get")
    mount = Mount("/x", (Resource("/{a}", (get,)), Resource("/{b}", (get,))), lambda settings: True)
    routes: Any = {name: object() for name in ROUTE_NAMES}
    with pytest.raises(ValueError, match="two resources"):
        Router((mount,), lambda mount: SimpleNamespace(get=None), routes)
