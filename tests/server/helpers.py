"""Paths and small request helpers shared by the server tests."""

from __future__ import annotations

from typing import Any

import httpx

from rendezvous.protocol import GEN1_PATH, GEN2_STABLE_PATH, GEN2_UNSTABLE_PATH

#: Short names for the server tests, which build many URLs from them.
GEN1, GEN2, GEN2_STABLE = GEN1_PATH, GEN2_UNSTABLE_PATH, GEN2_STABLE_PATH
TEXT = {"Content-Type": "text/plain"}

#: The headers every Gen-1 session answer carries.
GEN1_SESSION_HEADERS = ("etag", "expires", "last-modified", "cache-control", "pragma", "content-length")


def gen1_create(client: httpx.Client, body: bytes = b"") -> httpx.Response:
    response = client.post(GEN1, content=body, headers=TEXT)
    assert response.status_code == 201, response.text
    return response


def gen1_session(client: httpx.Client, body: bytes = b"") -> tuple[str, str]:
    """Create a Gen-1 session; its URL and first ETag."""
    response = gen1_create(client, body)
    return response.json()["url"], response.headers["etag"]


def gen1_put(client: httpx.Client, url: str, etag: str, body: bytes) -> httpx.Response:
    return client.put(url, content=body, headers={**TEXT, "If-Match": etag})


def gen2_session(client: httpx.Client, data: str = "", prefix: str = GEN2) -> dict[str, Any]:
    response = client.post(prefix, json={"data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_matrix_error(response: httpx.Response, status: int, errcode: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["errcode"] == errcode, body
    assert isinstance(body["error"], str)
    return body
