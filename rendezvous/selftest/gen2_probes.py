"""The Gen-2 (MSC4388) checks: discovery, create, then the checks on the new session.

Gen-2 keeps its state in JSON bodies, so proxies break it less; what remains is the txnId route and its replay
records, the concurrent-write errcode, and the ``Sec-Fetch-*`` headers that tell a ``fetch()`` from a navigation.
"""

from __future__ import annotations

import httpx

from ..protocol import M_FORBIDDEN, M_NOT_FOUND
from . import shared_probes
from .adapter import Created, sample_payload
from .answers import errcode, json_field, json_object, lost, media_type, status_text
from .client import NAVIGATION_METADATA
from .context import Run
from .discovery import check_gen2_discovery
from .gen2 import Gen2, new_txn_id
from .report import Status

GEN2_CHECKS = (
    "create", "put", "txn_replay", "conflict", "read", "sec_fetch", "content_type", *shared_probes.SHARED_CHECKS,
)  # fmt: skip


async def run_gen2(run: Run) -> None:
    """Every Gen-2 check: discovery, create, then the checks on the new session."""
    gen = Gen2(run)
    remaining = [f"gen2.{check}" for check in GEN2_CHECKS]
    if not await check_gen2_discovery(run, gen.prefix):
        run.skip(remaining, "Needs a Gen-2 session, which discovery does not offer (see gen2.discovery).")
        return
    created = await gen.create()
    if created is None:
        run.skip(remaining[1:], "Needs a Gen-2 session, and creating one failed.")
        return
    await Gen2Checks(run, gen, created).run()


class Gen2Checks:
    """The Gen-2 checks on one session."""

    def __init__(self, run: Run, gen: Gen2, created: Created) -> None:
        self.run_ = run
        self.gen = gen
        self.created = created
        self.url = created.url
        self.token = created.version or ""
        self.data = sample_payload("gen2")
        self.txn = new_txn_id()
        #: Every answer from the session's API, for the content-type and CORS checks.
        self.answers: list[tuple[str, httpx.Response]] = [("POST", created.answer)]

    def record(self, name: str, status: Status, message: str) -> None:
        self.run_.record(name, status, message)

    def seen(self, label: str, response: httpx.Response) -> httpx.Response:
        """Keep ``response`` for the checks on every answer."""
        self.answers.append((label, response))
        return response

    async def run(self) -> None:
        """The checks in order; later ones reuse the answers of earlier ones."""
        run, gen, created = self.run_, self.gen, self.created
        new_token = await self.check_put()
        await self.check_txn_replay(new_token)
        await self.check_conflict()
        read = await self.check_read(new_token)
        await self.check_sec_fetch()
        await shared_probes.check_cors_preflight(run, gen, created)
        self.check_content_type()
        shared_probes.check_cors_headers(run, gen, self.answers)
        reads = await shared_probes.check_consistency(run, gen, created, read)
        shared_probes.check_ttl(run, gen, created, [read, *reads])
        await shared_probes.check_delete(run, gen, created)

    async def check_put(self) -> str | None:
        name = "gen2.put"
        gen = self.gen
        response = self.seen("PUT", await gen.write(self.created, self.token, self.data, txn=self.txn))
        if response.status_code in (404, 405) and errcode(response) != M_NOT_FOUND:
            # Synapse 1.157+ and ruma implement the PUT without a txnId only.
            gen.with_txn = False
            response = self.seen("PUT", await gen.write(self.created, self.token, self.data))
        if response.status_code != 200:
            self.record(
                name,
                Status.FAIL,
                f"PUT with the current sequence_token answered {status_text(response)}, expected 200." + lost(response),
            )
            return None
        token = gen.version(response)
        if token is None or token == self.token:
            self.record(name, Status.FAIL, "The PUT answer lacks a new sequence_token; it must change on every write.")
            return None
        if not gen.with_txn:
            self.record(
                name,
                Status.WARN,
                "Only the older PUT without a txnId works (as in Synapse 1.157+); the newest MSC4388 sends "
                "PUT …/rendezvous/{id}/{txnId}, which this server does not route.",
            )
        else:
            self.record(
                name, Status.PASS, "PUT …/{id}/{txnId} with the current sequence_token answered 200 with a new token."
            )
        return token

    async def check_txn_replay(self, new_token: str | None) -> None:
        name = "gen2.txn_replay"
        if new_token is None or not self.gen.with_txn:
            self.record(name, Status.SKIP, "Needs a successful PUT with a txnId.")
            return
        response = self.seen("PUT", await self.gen.write(self.created, self.token, self.data, txn=self.txn))
        if response.status_code != 200 or json_field(response, "sequence_token") != new_token:
            self.record(
                name,
                Status.FAIL,
                f"Repeating the PUT with the same txnId answered {status_text(response)} instead of the recorded "
                "200 with the same sequence_token; a client retrying after a lost answer would see a conflict. "
                "The txnId records are not shared between the instances behind this address, or expired early.",
            )
            return
        self.record(name, Status.PASS, "Repeating a PUT with the same txnId returned the recorded answer.")

    async def check_conflict(self) -> None:
        name = "gen2.conflict"
        expected = self.gen.concurrent_write
        response = self.seen("PUT", await self.gen.write(self.created, self.token, "stale write"))
        if response.status_code != 409:
            self.record(
                name,
                Status.FAIL,
                f"PUT with an outdated sequence_token answered {status_text(response)}, expected 409: "
                "concurrent writes are not detected.",
            )
            return
        seen = errcode(response)
        if seen != expected:
            seen_text = "a non-JSON body" if seen is None else f"errcode {seen}"
            self.record(
                name,
                Status.FAIL,
                f"The 409 carries {seen_text}, expected errcode {expected} as JSON; clients look for that "
                "errcode to re-read and retry. A proxy may replace error bodies.",
            )
            return
        self.record(name, Status.PASS, f"PUT with an outdated sequence_token answered 409 {expected}.")

    async def check_read(self, new_token: str | None) -> httpx.Response:
        name = "gen2.read"
        response = self.seen("GET", await self.gen.read(self.url))
        if response.status_code != 200:
            hint = ""
            if response.status_code == 403:
                hint = (
                    " A browser fetch() was taken for a navigation: the proxy rewrites the Sec-Fetch-* headers; "
                    "pass them through untouched."
                )
            self.record(
                name,
                Status.FAIL,
                f"GET as a browser fetch() answered {status_text(response)}, expected 200.{hint}{lost(response)}",
            )
            return response
        body = json_object(response)
        expected_data = self.data if new_token is not None else ""
        if body.get("data") != expected_data or (new_token is not None and body.get("sequence_token") != new_token):
            self.record(
                name,
                Status.FAIL,
                "GET did not return the data and sequence_token just written: requests reach instances that do "
                "not share sessions (see gen2.consistency), or a cache answered.",
            )
            return response
        self.record(name, Status.PASS, "GET as a browser fetch() returned the data and sequence_token just written.")
        return response

    async def check_sec_fetch(self) -> None:
        name = "gen2.sec_fetch"
        headers = {"Origin": self.run_.options.origin, **NAVIGATION_METADATA}
        response = await self.run_.http.send("GET", self.url, headers=headers)
        if response.status_code == 403 and errcode(response) == M_FORBIDDEN:
            self.record(name, Status.PASS, "A top-level navigation to the session is refused with 403 M_FORBIDDEN.")
        elif response.status_code == 200:
            self.record(
                name,
                Status.WARN,
                "A top-level navigation to the session got its payload (MSC4388 asks for 403 M_FORBIDDEN): the "
                "proxy strips the Sec-Fetch-* headers, or the server does not check them.",
            )
        else:
            self.record(
                name, Status.FAIL, f"A navigation GET answered {status_text(response)}, expected 403 M_FORBIDDEN."
            )

    def check_content_type(self) -> None:
        name = "gen2.content_type"
        for label, response in self.answers:
            if response.content and media_type(response) != "application/json":
                self.record(
                    name,
                    Status.FAIL,
                    f"The {label} answer has Content-Type {response.headers.get('content-type')!r}, expected "
                    "application/json: something replaced the server's answer.",
                )
                return
        self.record(name, Status.PASS, "Every answer was application/json.")
