"""The OpenAPI document describes exactly the routes the server answers."""

from __future__ import annotations

import re

import httpx
import pytest

from rendezvous.protocol import OPENAPI_PATH
from tests.support.server import serve_settings

from .helpers import GEN1, GEN2, GEN2_STABLE

HTTP_METHODS = ("get", "put", "post", "delete")


def _operations(document: dict[str, object]) -> list[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return [(method, path) for path, item in paths.items() for method in HTTP_METHODS if method in item]


@pytest.fixture
def document(client: httpx.Client) -> dict[str, object]:
    response = client.get(OPENAPI_PATH)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_document_is_openapi_3(document: dict[str, object]) -> None:
    assert str(document["openapi"]).startswith("3.")


def test_document_lists_both_generations_and_the_enabled_stable_prefix(document: dict[str, object]) -> None:
    paths = document["paths"]
    assert isinstance(paths, dict)
    for prefix in (GEN1, GEN2, GEN2_STABLE):
        assert prefix in paths
    assert f"{GEN2}/{{id}}/{{txnId}}" in paths


def test_every_documented_operation_is_routed(client: httpx.Client, document: dict[str, object]) -> None:
    for method, path in _operations(document):
        concrete = re.sub(r"\{[^}]+\}", "abc", path)
        response = client.request(method.upper(), concrete, json={"data": "", "sequence_token": "1"})
        assert response.status_code not in (405, 500), (method, path, response.text)
        if response.status_code == 404:
            assert response.json()["errcode"] != "M_UNRECOGNIZED", (method, path)


def test_undocumented_methods_are_not_routed(client: httpx.Client, document: dict[str, object]) -> None:
    documented = set(_operations(document))
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path in paths:
        concrete = re.sub(r"\{[^}]+\}", "abc", path)
        for method in HTTP_METHODS:
            if (method, path) not in documented:
                response = client.request(method.upper(), concrete)
                assert response.status_code in (404, 405), (method, path)
                assert response.json()["errcode"] == "M_UNRECOGNIZED"


def test_disabled_apis_are_absent_from_the_document() -> None:
    with serve_settings(gen1_enabled=False, gen2_create_policy="off") as base:
        paths = httpx.get(f"{base}{OPENAPI_PATH}").json()["paths"]
        assert not [p for p in paths if "rendezvous" in p and not p.startswith("/_rendezvous")]
