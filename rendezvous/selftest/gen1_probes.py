"""The Gen-1 (MSC4108) checks, in the order a login uses the session.

Gen-1 rests on HTTP semantics that proxies like to touch: strong ETags with If-Match / If-None-Match, an exact
``Content-Type: text/plain``, ``Cache-Control: no-transform``. Most checks here name what a proxy broke.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from ..protocol import M_CONCURRENT_WRITE
from . import shared_probes
from .adapter import Created, sample_payload
from .answers import join, lost, matrix_error, status_text
from .client import RequestFailed
from .context import Run
from .discovery import check_gen1_discovery
from .gen1 import Gen1
from .report import Status
from .verdicts import COMPRESSION_FIX, describe_etag_problem, header_tokens, http_date_seconds

#: What a Gen-1 client sends as If-Match when it holds no ETag, and as a stale one.
_MISSING_ETAG = '"missing"'
_STALE_ETAG = '"0000selftest-stale"'
#: Every 201 and 304 must carry these; Element X refuses an answer without them.
_LIFETIME_HEADERS = ("ETag", "Expires", "Last-Modified")

GEN1_CHECKS = (
    "create_headers", "put", "etag_strong", "no_transform", "content_type", "etag_end_to_end", "not_modified",
    "precondition_failed", *shared_probes.SHARED_CHECKS, "held_poll",
)  # fmt: skip
#: Statuses a proxy answers with when it gives up waiting for the upstream.
_PROXY_GAVE_UP = (502, 503, 504)


async def run_gen1(run: Run) -> None:
    """Every Gen-1 check: discovery, create, then the checks on the new session."""
    await check_gen1_discovery(run)
    gen = Gen1(run)
    created = await gen.create()
    if created is None:
        run.skip([f"gen1.{check}" for check in GEN1_CHECKS], "Needs a Gen-1 session, and creating one failed.")
        return
    await Gen1Checks(run, gen, created).run()


class Gen1Checks:
    """The Gen-1 checks on one session."""

    def __init__(self, run: Run, gen: Gen1, created: Created) -> None:
        self.run_ = run
        self.gen = gen
        self.created = created
        self.url = created.url
        self.payload = sample_payload("gen1")
        #: The time the not-modified GET took: what "answered at once" means on this network.
        self.round_trip_s = 0.0

    def record(self, name: str, status: Status, message: str) -> None:
        self.run_.record(name, status, message)

    async def run(self) -> None:
        """The checks in order; later ones reuse the answers of earlier ones."""
        run, gen, created = self.run_, self.gen, self.created
        post = created.answer
        self.check_create_headers(post)
        etag0 = created.version
        put = await gen.write(created, etag0 or _MISSING_ETAG, self.payload)
        put_ok = self.check_put(put, etag0)
        get = await gen.read(self.url)
        self.check_etag_strong([("POST", post), ("PUT", put), ("GET", get)])
        self.check_no_transform([post, put, get])
        self.check_content_type(get)
        self.check_etag_end_to_end(put if put_ok else None, get)
        await self.check_not_modified(gen.version(get))
        await self.check_precondition_failed(etag0 if put_ok else _STALE_ETAG)
        await shared_probes.check_cors_preflight(run, gen, created)
        shared_probes.check_cors_headers(run, gen, [("POST", post), ("PUT", put), ("GET", get)])
        reads = await shared_probes.check_consistency(run, gen, created, get)
        shared_probes.check_ttl(run, gen, created, [get, *reads])
        await self.check_held_poll(gen.version(get))
        await shared_probes.check_delete(run, gen, created)

    def check_create_headers(self, post: httpx.Response) -> None:
        missing = [h for h in _LIFETIME_HEADERS if h.lower() not in post.headers]
        unparseable = [
            h
            for h in ("Expires", "Last-Modified")
            if h.lower() in post.headers and http_date_seconds(post.headers[h]) is None
        ]
        if missing or unparseable:
            problems = []
            if missing:
                problems.append(f"the 201 lacks {', '.join(missing)}")
            if unparseable:
                problems.append(f"{', '.join(unparseable)} is not an HTTP-date")
            self.record(
                "gen1.create_headers",
                Status.FAIL,
                f"{join(problems)} Element X (matrix-rust-sdk) refuses such an answer; make the proxy pass "
                "these headers through.",
            )
        else:
            self.record("gen1.create_headers", Status.PASS, "The 201 carries ETag, Expires and Last-Modified.")

    def check_put(self, put: httpx.Response, etag0: str | None) -> bool:
        name = "gen1.put"
        if put.status_code != 202:
            hint = ""
            if put.status_code == 412:
                hint = (
                    " The server did not recognise the ETag it had just sent: something between this machine "
                    "and the server changed it (see gen1.etag_strong)."
                )
            elif put.status_code == 413:
                hint = (
                    f" A {len(self.payload)}-byte payload was refused: the server or proxy limit is below the "
                    "4 KiB MSC4108 allows, and Element's messages do not fit. Raise the body limit."
                )
            self.record(
                name, Status.FAIL, f"PUT with If-Match answered {status_text(put)}, expected 202.{hint}{lost(put)}"
            )
            return False
        etag1 = put.headers.get("etag")
        if etag1 is None:
            self.record(
                name,
                Status.FAIL,
                "The 202 carries no ETag; clients need the new ETag to poll and write again. Make the proxy "
                "pass ETag through on body-less answers (Cloudflare drops it unless Content-Type is set).",
            )
            return False
        if etag1 == etag0:
            self.record(name, Status.FAIL, "The ETag did not change after a write; MSC4108 requires a new one.")
            return False
        self.record(name, Status.PASS, "PUT with If-Match answered 202 with a new ETag.")
        return True

    def check_etag_strong(self, answers: list[tuple[str, httpx.Response]]) -> None:
        for label, response in answers:
            if not 200 <= response.status_code < 300:
                continue
            problem = describe_etag_problem(response.headers.get("etag"))
            if problem is not None:
                self.record("gen1.etag_strong", Status.FAIL, f"On the {label} answer: {problem}.")
                return
        self.record("gen1.etag_strong", Status.PASS, "Every ETag arrived strong and quoted.")

    def check_no_transform(self, answers: list[httpx.Response]) -> None:
        name = "gen1.no_transform"
        for response in answers:
            encoding = response.headers.get("content-encoding")
            if encoding is not None and encoding.strip().lower() != "identity":
                self.record(
                    name,
                    Status.FAIL,
                    f"A response came back with Content-Encoding: {encoding} although the server sends "
                    f"Cache-Control: no-transform: {COMPRESSION_FIX}.",
                )
                return
        for response in answers:
            directives = header_tokens(response.headers.get("cache-control"))
            if not {"no-transform", "no-store"} <= directives:
                self.record(
                    name,
                    Status.WARN,
                    "Responses lack Cache-Control: no-store, no-transform (a proxy replaced it, or the server "
                    "does not send it); nothing is compressed now, but a CDN may compress or cache these "
                    "answers and break the ETags. Let the proxy pass Cache-Control through.",
                )
                return
        self.record(name, Status.PASS, "Nothing was compressed, and Cache-Control: no-store, no-transform arrived.")

    def check_content_type(self, get: httpx.Response) -> None:
        name = "gen1.content_type"
        if get.status_code != 200:
            self.record(name, Status.FAIL, f"GET on the session answered {status_text(get)}, expected 200.{lost(get)}")
            return
        value = get.headers.get("content-type")
        if value != "text/plain":
            self.record(
                name,
                Status.FAIL,
                f"GET answered Content-Type {value!r}; it must be exactly 'text/plain'. js-sdk compares it "
                "with !== (Element Web then polls forever) and Element X rejects it. Something (often a "
                "proxy or framework adding '; charset=utf-8') rewrites it: pass Content-Type through untouched.",
            )
            return
        self.record(name, Status.PASS, "GET answered Content-Type exactly text/plain.")

    def check_etag_end_to_end(self, put: httpx.Response | None, get: httpx.Response) -> None:
        name = "gen1.etag_end_to_end"
        if put is None:
            self.record(name, Status.SKIP, "Needs a successful PUT.")
            return
        if get.status_code != 200:
            self.record(name, Status.FAIL, f"GET after the PUT answered {status_text(get)}.")
            return
        if get.content != self.payload.encode():
            self.record(
                name,
                Status.FAIL,
                "GET after the PUT did not return the payload just written: the two requests reached servers "
                "that do not share sessions (see gen1.consistency), or a cache answered the GET.",
            )
            return
        if get.headers.get("etag") != put.headers.get("etag"):
            self.record(
                name,
                Status.FAIL,
                "The ETag of the GET differs from the one the PUT returned for the same payload: something "
                "rewrites ETags on the way, so If-None-Match and If-Match comparisons fail.",
            )
            return
        self.record(name, Status.PASS, "The payload and its ETag came back unchanged from PUT to GET.")

    async def check_not_modified(self, current: str | None) -> None:
        name = "gen1.not_modified"
        if current is None:
            self.record(name, Status.SKIP, "Needs an ETag from the GET.")
            return
        # Prefer: wait=0 asks for the answer now: a qrlink server would otherwise hold this poll (gen1.held_poll).
        started = time.monotonic()
        response = await self.gen.read(self.url, {"If-None-Match": current, "Prefer": "wait=0"})
        self.round_trip_s = time.monotonic() - started
        if response.status_code != 304:
            self.record(
                name,
                Status.FAIL,
                f"GET with If-None-Match of the current ETag answered {status_text(response)}, expected 304."
                + (
                    lost(response)
                    or " A proxy drops If-None-Match or answers from a cache; clients then re-read every second."
                ),
            )
            return
        missing = [h for h in _LIFETIME_HEADERS if h.lower() not in response.headers]
        if missing:
            self.record(
                name,
                Status.FAIL,
                f"The 304 lacks {', '.join(missing)}; Element X requires them on every 304. Make the proxy pass "
                "them through on 304 answers.",
            )
            return
        if response.headers.get("etag") != current:
            self.record(name, Status.FAIL, "The 304 carries a different ETag than the one asked about.")
            return
        self.record(name, Status.PASS, "GET with If-None-Match answered 304 with ETag, Expires and Last-Modified.")

    async def check_held_poll(self, current: str | None) -> None:
        """A plain poll naming the current ETag, left waiting ``hold_wait_s``, then answered by a write from a
        second connection: a server that holds polls (qrlink's ``hold_enabled``) answers it with the payload, and
        every proxy on the way must keep it open that long. A 502/504 or a closed connection means one cuts it."""
        name = "gen1.held_poll"
        wait = self.run_.options.hold_wait_s
        if wait <= 0:
            self.record(name, Status.SKIP, "Skipped with --hold-wait 0.")
            return
        if current is None:
            self.record(name, Status.SKIP, "Needs an ETag from the GET.")
            return
        started = time.monotonic()
        http, timeout = self.gen.http, self.run_.options.timeout_s
        headers = http.browser({"If-None-Match": current})
        poll = asyncio.ensure_future(http.send("GET", self.url, headers=headers, request_timeout_s=wait + timeout))
        done, _ = await asyncio.wait({poll}, timeout=wait)
        if not done:
            payload = sample_payload("gen1 held poll")
            write = await self.gen.write(self.created, current, payload)
            written = time.monotonic()
            if write.status_code != 202:
                poll.cancel()
                self.record(name, Status.FAIL, f"The write that should answer the held poll got {status_text(write)}.")
                return
            try:
                response = await asyncio.wait_for(poll, timeout)
            except (TimeoutError, RequestFailed):
                self.record(
                    name,
                    Status.FAIL,
                    f"A poll held {wait:g} s got no answer after a write from another connection: something on the "
                    "way buffers or drops answers to held requests.",
                )
                return
            if response.status_code == 200 and response.content == payload.encode():
                self.record(
                    name,
                    Status.PASS,
                    f"A poll held {wait:g} s was answered by a write from another connection in "
                    f"{(time.monotonic() - written) * 1000:.0f} ms: the proxy chain keeps held polls open.",
                )
                return
            self.record(name, Status.FAIL, self._cut(response, time.monotonic() - started))
            return
        elapsed = time.monotonic() - started
        try:
            response = poll.result()
        except RequestFailed:
            self.record(
                name,
                Status.FAIL,
                f"A held poll got no answer: the connection was closed after {elapsed:.1f} s. A proxy on the way "
                "cuts requests that wait; raise its read timeout above the server's hold_ms, or lower hold_ms.",
            )
            return
        if response.status_code == 304 and elapsed <= 2 * self.round_trip_s + 0.1:
            self.record(name, Status.SKIP, "The server answered the poll at once: it does not hold polls.")
            return
        if response.status_code == 304:
            self.record(
                name,
                Status.PASS,
                f"The poll was held {elapsed:.1f} s, then answered 304 (the server's hold_ms, shorter than "
                f"--hold-wait {wait:g}): the proxy chain kept it open that long.",
            )
            return
        self.record(name, Status.FAIL, self._cut(response, elapsed))

    @staticmethod
    def _cut(response: httpx.Response, elapsed: float) -> str:
        if response.status_code in _PROXY_GAVE_UP:
            return (
                f"A held poll was answered {status_text(response)} after {elapsed:.1f} s: a proxy's read timeout is "
                "shorter than the server holds polls. Raise it above hold_ms (nginx proxy_read_timeout, default "
                "60 s), or lower hold_ms."
            )
        return f"A held poll was answered {status_text(response)} after {elapsed:.1f} s, expected 200 or 304."

    async def check_precondition_failed(self, stale: str | None) -> None:
        name = "gen1.precondition_failed"
        response = await self.gen.write(self.created, stale or _STALE_ETAG, "stale write")
        if response.status_code != 412:
            self.record(
                name,
                Status.FAIL,
                f"PUT with an outdated ETag answered {status_text(response)}, expected 412: concurrent writes "
                "are not detected, or a proxy drops If-Match.",
            )
            return
        error = matrix_error(response)
        if error is None or error.get("org.matrix.msc4108.errcode") != M_CONCURRENT_WRITE:
            self.record(
                name,
                Status.FAIL,
                "The 412 body is not the Matrix error "
                '{"errcode": "M_UNKNOWN", "org.matrix.msc4108.errcode": "M_CONCURRENT_WRITE"} with '
                "Content-Type application/json; a proxy replaced the error page (e.g. custom error pages for "
                "4xx). Let the server's error bodies through.",
            )
            return
        self.record(name, Status.PASS, "PUT with an outdated ETag answered 412 M_CONCURRENT_WRITE as JSON.")
