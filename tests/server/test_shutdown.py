"""SIGTERM answers every parked long-poll and watch at once, and the server exits within seconds.

Without it uvicorn waits for each request in flight, and a long-poll is in flight until its deadline (up to
``push_max_wait_seconds``, 300 s here).
"""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.server import serve_cli_process

from .helpers import GEN2, gen1_session, gen2_session

ENV = {
    "RENDEZVOUS_PUSH_MAX_WAIT_SECONDS": "300",
    "RENDEZVOUS_CREATE_RATE_PER_SECOND": "0",
    "RENDEZVOUS_SESSION_RATE_PER_SECOND": "0",
    "RENDEZVOUS_HOLD_MS": "120000",
}
#: How long the server may take from SIGTERM to exit.
EXIT_WITHIN_S = 5.0


def _parked(client: httpx.Client) -> int:
    text = client.get("/metrics").text
    parked = re.findall(r"^rendezvous_push_parked\{[^}]*\} (\S+)$", text, re.M)
    held = re.findall(r"^rendezvous_holds (\S+)$", text, re.M)
    return sum(int(float(n)) for n in parked + held)


def _watch_close_code(url: str) -> int | None:
    with connect(url, open_timeout=5, close_timeout=5) as ws:
        ws.recv(timeout=5)  # the current revision
        try:
            ws.recv(timeout=30)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_sigterm_answers_parked_long_polls_and_watches_and_exits_quickly(server: str) -> None:
    if server == "granian":
        pytest.importorskip("granian")
    with (
        serve_cli_process(ENV, ["--server", server]) as (proc, base),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        gen1_url, etag = gen1_session(client, b"hello")
        gen2 = gen2_session(client, "hi")
        ws_base = base.replace("http://", "ws://")
        held_url, held_etag = gen1_session(client, b"held")
        with ThreadPoolExecutor(4) as pool:
            gen1_poll = pool.submit(client.get, gen1_url, headers={"If-None-Match": etag, "Prefer": "wait=300"})
            gen2_poll = pool.submit(client.get, f"{GEN2}/{gen2['id']}", params={"since": "1", "timeout_ms": "300000"})
            watch = pool.submit(_watch_close_code, f"{ws_base}{GEN2}/{gen2['id']}/watch")
            # A plain poll, as Element sends it: held, not parked as a long-poll.
            held = pool.submit(client.get, held_url, headers={"If-None-Match": held_etag})
            deadline = time.monotonic() + 10
            while _parked(client) < 4:
                assert time.monotonic() < deadline, "the long-polls and the watch did not park"
                time.sleep(0.05)

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            first = gen1_poll.result(timeout=EXIT_WITHIN_S)
            assert first.status_code == 304
            assert first.headers["etag"] == etag
            assert first.headers["preference-applied"] == "wait=300"
            second = gen2_poll.result(timeout=EXIT_WITHIN_S)
            assert second.status_code == 200
            assert second.json()["sequence_token"] == "1"
            assert second.json()["data"] == "hi"
            third = held.result(timeout=EXIT_WITHIN_S)
            assert (third.status_code, third.headers["etag"]) == (304, held_etag)
            assert "preference-applied" not in third.headers
            # 1001 from the app, or 1012 from uvicorn closing WebSockets itself: either way, at once. granian may
            # drop the connection before the app's close frame is out.
            closes = (1001, 1012, None) if server == "granian" else (1001, 1012)
            assert watch.result(timeout=EXIT_WITHIN_S) in closes
        proc.wait(timeout=EXIT_WITHIN_S + 5)
        assert time.monotonic() - started < EXIT_WITHIN_S
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert proc.returncode in (0, -signal.SIGTERM)
