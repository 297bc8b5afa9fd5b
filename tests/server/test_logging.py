"""Structured logs: JSON lines when asked for, and never a payload, a full session id, a token or a txnId.

The server runs through its CLI with the chattiest settings (JSON, debug level, access log on) while two clients
go through complete exchanges of both generations (long-polls and WebSocket watches included); then its whole
output is searched.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import httpx

from qrlink_client.transport import Gen1Transport, Gen2Transport, TransportOptions
from rendezvous.logs import redact, redact_path
from rendezvous.protocol import HEALTH_PATH
from tests.server.helpers import GEN1, GEN2
from tests.server.test_push_support import NO_LIMITS, cli_server

CHATTY = {
    **NO_LIMITS,
    "RENDEZVOUS_LOG_FORMAT": "json",
    "RENDEZVOUS_LOG_LEVEL": "debug",
    "RENDEZVOUS_ACCESS_LOG": "true",
}


async def _exchange(base_url: str, secrets_seen: list[str]) -> None:
    """Complete exchanges through both generations, over every delivery mechanism; record what is secret."""
    async with httpx.AsyncClient(timeout=30) as http:
        for websocket in (False, True):
            options = TransportOptions(websocket=websocket)
            g1 = await Gen1Transport.create(http, f"{base_url}{GEN1}", options=options)
            j1 = await Gen1Transport.join(http, g1.url, options=options)
            secrets_seen += [g1.url, g1.url.rsplit("/", 1)[1]]
            g2 = await Gen2Transport.create(http, base_url, options=options)
            j2 = await Gen2Transport.join(http, base_url, g2.rendezvous_id, options=options)
            secrets_seen.append(g2.rendezvous_id)
            for sender, receiver in ((j1, g1), (g1, j1), (j2, g2), (g2, j2)):
                payload = f"payload-{secrets.token_hex(12)}"
                secrets_seen.append(payload)
                receiving = asyncio.create_task(receiver.receive(timeout=10))
                await asyncio.sleep(0.2)
                await sender.send(payload)
                assert await receiving == payload
            for transport in (g1, j1, g2, j2):
                await transport.aclose()
            await g1.delete()
            await g2.delete()
        # Requests whose URLs carry a txnId and an access token.
        session = (await http.post(f"{base_url}{GEN2}", json={"data": ""})).json()
        txn, token = secrets.token_hex(16), f"syt_{secrets.token_hex(16)}"
        secrets_seen += [session["id"], txn, token]
        await http.put(f"{base_url}{GEN2}/{session['id']}/{txn}", json={"sequence_token": "1", "data": "x"})
        await http.get(f"{base_url}{GEN2}", params={"access_token": token})
        await http.get(f"{base_url}{GEN2}", headers={"Authorization": f"Bearer {token}"})


def test_json_logs_carry_no_payload_session_id_token_or_txn_id(tmp_path: Path) -> None:
    seen: list[str] = []
    with cli_server(tmp_path / "server.log", CHATTY) as server:
        asyncio.run(_exchange(server.base_url, seen))
    text = server.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 20, "the exchange should have produced access lines"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    for secret in seen:
        assert secret not in text
    # Not vacuous: the access lines are there, with their ids shortened.
    assert any(redact(seen[1]) in line for line in lines)


def test_granian_access_log_carries_no_session_id_token_or_txn_id(tmp_path: Path) -> None:
    seen: list[str] = []
    env = {**CHATTY, "RENDEZVOUS_SERVER": "granian", "RENDEZVOUS_LOG_FORMAT": "plain"}
    with cli_server(tmp_path / "server.log", env) as server:
        asyncio.run(_exchange(server.base_url, seen))
    text = server.log_text()
    access = [line for line in text.splitlines() if GEN1 in line or GEN2 in line]
    assert len(access) > 20, "the exchange should have produced access lines"
    for secret in seen:
        assert secret not in text
    assert any(redact(seen[1]) in line for line in access)


def test_plain_logs_are_lines_of_text(tmp_path: Path) -> None:
    with cli_server(tmp_path / "server.log", {**NO_LIMITS, "RENDEZVOUS_LOG_LEVEL": "info"}) as server:
        httpx.get(f"{server.base_url}{HEALTH_PATH}")
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert not line.lstrip().startswith("{")


def test_redacted_paths_keep_route_segments_and_shorten_the_rest() -> None:
    session_id = secrets.token_urlsafe(24)
    path = f"{GEN2}/{session_id}/txn-{secrets.token_hex(8)}?since=3&access_token=syt_x"
    shown = redact_path(path)
    assert shown.startswith(f"{GEN2}/{session_id[:4]}…/txn-…")
    assert session_id not in shown
    assert shown.endswith("?…")
    assert redact_path(f"{GEN1}/{session_id}/watch") == f"{GEN1}/{session_id[:4]}…/watch"
