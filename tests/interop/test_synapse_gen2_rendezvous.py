"""The Synapse peer serves the MSC4388 (Gen-2) rendezvous in "open" mode (older PUT without a txnId)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


def create(synapse: SynapseServer, data: str = "") -> dict[str, Any]:
    response = httpx.post(synapse.gen2_base, json={"data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_discovery_says_create_available(synapse: SynapseServer) -> None:
    response = httpx.get(synapse.gen2_base)

    assert response.status_code == 200
    assert response.json() == {"create_available": True}


def test_create_answers_id_sequence_token_and_relative_expiry(synapse: SynapseServer) -> None:
    body = create(synapse)

    assert body.keys() == {"id", "sequence_token", "expires_in_ms"}
    assert 0 < body["expires_in_ms"] <= 300_000


def test_get_answers_data_and_current_sequence_token(synapse: SynapseServer) -> None:
    created = create(synapse, data="first")

    response = httpx.get(f"{synapse.gen2_base}/{created['id']}")

    assert response.status_code == 200
    assert response.json()["data"] == "first"
    assert response.json()["sequence_token"] == created["sequence_token"]


def test_put_by_id_with_current_token_stores_data_and_mints_new_token(synapse: SynapseServer) -> None:
    created = create(synapse)
    url = f"{synapse.gen2_base}/{created['id']}"

    response = httpx.put(url, json={"sequence_token": created["sequence_token"], "data": "second"})

    assert response.status_code == 200
    new_token = response.json()["sequence_token"]
    assert new_token != created["sequence_token"]
    assert httpx.get(url).json() == {
        "data": "second",
        "sequence_token": new_token,
        "expires_in_ms": pytest.approx(created["expires_in_ms"], abs=5_000),
    }


def test_put_by_id_with_stale_token_answers_409_concurrent_write(synapse: SynapseServer) -> None:
    created = create(synapse)
    url = f"{synapse.gen2_base}/{created['id']}"
    httpx.put(url, json={"sequence_token": created["sequence_token"], "data": "second"})

    response = httpx.put(url, json={"sequence_token": created["sequence_token"], "data": "third"})

    assert response.status_code == 409
    assert response.json()["errcode"] == "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
