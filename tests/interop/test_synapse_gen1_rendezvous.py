"""The Synapse peer serves the MSC4108 (Gen-1) rendezvous the way Element's clients expect."""

from __future__ import annotations

import httpx
import pytest

from rendezvous.protocol import VERSIONS_PATH
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

TEXT = {"Content-Type": "text/plain"}


def create(synapse: SynapseServer) -> httpx.Response:
    return httpx.post(synapse.gen1_create_url, headers=TEXT, content=b"")


def test_create_answers_201_with_absolute_session_url(synapse: SynapseServer) -> None:
    response = create(synapse)

    assert response.status_code == 201
    assert response.json()["url"].startswith(f"{synapse.base_url}_synapse/client/rendezvous/")
    assert {"etag", "expires", "last-modified"} <= response.headers.keys()


def test_put_with_if_match_answers_202_with_new_etag(synapse: SynapseServer) -> None:
    created = create(synapse)

    response = httpx.put(created.json()["url"], headers={**TEXT, "If-Match": created.headers["etag"]}, content=b"hello")

    assert response.status_code == 202
    assert response.headers["etag"] not in ("", created.headers["etag"])


def test_get_answers_200_exact_text_plain_with_the_body(synapse: SynapseServer) -> None:
    created = create(synapse)
    url = created.json()["url"]
    httpx.put(url, headers={**TEXT, "If-Match": created.headers["etag"]}, content=b"hello")

    response = httpx.get(url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "hello"


def test_versions_advertises_msc4108(synapse: SynapseServer) -> None:
    response = httpx.get(f"{synapse.base_url}{VERSIONS_PATH.lstrip('/')}")

    assert response.json()["unstable_features"]["org.matrix.msc4108"] is True
