"""``rendezvous selftest``: check a deployed rendezvous end to end, the way browsers and Element's clients use it.

Everything between a client and the server (TLS terminators, CDNs, load balancers, WAFs) can break QR login in
ways no server-side test sees: a compressing proxy weakens the Gen-1 ``ETag`` so every PUT gets 412, a charset
appended to ``Content-Type`` makes js-sdk poll forever, a stripped ``Access-Control-Expose-Headers`` hides the
ETag from Element Web, two memory-store instances behind one address lose half the requests. This module runs
the whole Gen-1 and Gen-2 exchange through the public URL and reports each of those properties as one named
check with a plain-English verdict, the likely cause and the fix.

Each check has a stable ``name`` (``gen1.etag_strong``, ``gen2.consistency``, …) and a :class:`Status`. Any
``fail`` makes the run fail; ``warn`` marks what works today but is fragile or off-spec. Every session the
run creates is deleted before it returns, whatever happened.
"""

from __future__ import annotations

import asyncio
import enum
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__
from .gen1 import PATH as GEN1_PATH
from .gen2 import STABLE_CONCURRENT_WRITE, STABLE_PATH, UNSTABLE_CONCURRENT_WRITE, UNSTABLE_PATH
from .store import is_opaque_id

VERSIONS_PATH = "/_matrix/client/versions"
GEN1_FEATURE = "org.matrix.msc4108"
#: Element Web's origin: what a browser sends when the web client talks to a homeserver.
DEFAULT_ORIGIN = "https://app.element.io"
DEFAULT_REPEAT = 20
DEFAULT_TIMEOUT_S = 10.0

#: What a browser sends, so that a compressing proxy has every reason to compress.
_ACCEPT_ENCODING = "gzip, deflate, br"
#: The ``Sec-Fetch-*`` headers of a ``fetch()`` from another origin: what Element Web sends.
_FETCH_METADATA = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "cross-site"}
#: The ``Sec-Fetch-*`` headers of a session URL typed into the address bar.
_NAVIGATION_METADATA = {
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Site": "none",
    "Sec-Fetch-User": "?1",
}
#: A payload that compresses well (a proxy with a size threshold still compresses it) and that fits the
#: smallest limit a client could live with: real MSC4108 messages run to a few hundred bytes up to ~3 KiB.
_PAYLOAD_SIZE = 1536
#: How long a 429 answer may make one request wait, and how often it is retried.
_MAX_RATE_LIMIT_WAIT_S = 10.0
_RATE_LIMIT_RETRIES = 3
#: MSC4388: a session should live at least 120 s and at most 300 s.
_GEN2_MIN_TTL_MS = 120_000
_GEN2_MAX_TTL_MS = 300_000
#: MSC4108 suggests 60 s; shorter leaves no time to scan and confirm.
_GEN1_MIN_TTL_S = 60
#: Clock skew beyond which js-sdk's use of ``Expires`` as an absolute time (matrix-js-sdk #5141) bites.
_MAX_CLOCK_SKEW_S = 30
#: Slack for comparing lifetimes read at different moments (network time, whole-second HTTP dates).
_TTL_SLACK_MS = 2_500
_MAX_REDIRECTS = 5
#: DELETEs per left-over session before giving up on it.
_CLEANUP_ATTEMPTS = 3

_COMPRESSION_FIX = (
    "a proxy or CDN is compressing the rendezvous responses; switch gzip/brotli/zstd off for the rendezvous "
    "paths (nginx: gzip off; Caddy: no encode directive; Traefik: no compress middleware; Cloudflare: a "
    "compression rule that disables it) and make sure the proxy honours Cache-Control: no-transform"
)


class Status(enum.StrEnum):
    """The verdict of one check."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: a stable name, a verdict and what was seen (with the likely cause and fix on failure)."""

    name: str
    status: Status
    message: str

    def as_dict(self) -> dict[str, str]:
        """The result as plain JSON values."""
        return {"name": self.name, "status": self.status.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class SelfTestOptions:
    """What to test and how.

    ``base_url`` is the homeserver's client base URL (or the rendezvous server's own URL). ``gen1_create_url``
    overrides where the Gen-1 session is created (default: the homeserver's MSC4108 endpoint under
    ``base_url``). ``access_token`` is only sent to Gen-2 discovery and create and never printed.
    """

    base_url: str
    gen1_create_url: str | None = None
    gen1: bool = True
    gen2: bool = True
    gen2_stable: bool = False
    origin: str = DEFAULT_ORIGIN
    repeat: int = DEFAULT_REPEAT
    timeout_s: float = DEFAULT_TIMEOUT_S
    access_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ValueError("repeat must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


@dataclass(slots=True)
class SelfTestReport:
    """Every check of one run, in the order they finished."""

    base_url: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check failed (warnings and skips do not fail a run)."""
        return all(result.status is not Status.FAIL for result in self.results)

    @property
    def exit_status(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        return {status.value: sum(r.status is status for r in self.results) for status in Status}

    def get(self, name: str) -> CheckResult | None:
        """The result of the check called ``name``, if it ran."""
        return next((result for result in self.results if result.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "base_url": self.base_url,
            "ok": self.ok,
            "summary": self.counts(),
            "checks": [result.as_dict() for result in self.results],
        }


class _RequestFailed(Exception):
    """A request got no HTTP answer at all (connection refused, TLS error, timeout)."""


# -- pure header and body checks ----------------------------------------------------------------------------


def describe_etag_problem(etag: str | None) -> str | None:
    """Why ``etag`` cannot work as a Gen-1 ETag, or ``None`` if it is a strong entity tag."""
    if etag is None:
        return (
            "no ETag header came back: a proxy, CDN or browser extension strips it (Cloudflare drops it from "
            "compressed or body-less answers); js-sdk then fails with etag_missing. Pass ETag through untouched"
        )
    if etag.startswith("W/"):
        return f"ETag came back weak ({etag[:3]}…): {_COMPRESSION_FIX}; a weak ETag never satisfies If-Match"
    if len(etag) < 2 or not (etag.startswith('"') and etag.endswith('"')):
        return "ETag is not a quoted entity tag: something rewrote it on the way"
    return None


def header_tokens(value: str | None) -> set[str]:
    """The lower-cased members of a comma-separated header value."""
    if value is None:
        return set()
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def describe_cors_problems(response: httpx.Response, origin: str, *, expose_etag: bool) -> list[str]:
    """What a browser at ``origin`` would refuse in ``response``: missing allow-origin or unexposed ETag."""
    problems = []
    allow_origin = response.headers.get("access-control-allow-origin")
    if allow_origin is None:
        problems.append("no Access-Control-Allow-Origin, so browsers hide the answer from Element Web")
    elif allow_origin not in ("*", origin):
        problems.append(f"Access-Control-Allow-Origin is {allow_origin!r}, which does not admit {origin}")
    if expose_etag:
        exposed = header_tokens(response.headers.get("access-control-expose-headers"))
        if "etag" not in exposed and "*" not in exposed:
            problems.append(
                "Access-Control-Expose-Headers does not list ETag, so Element Web cannot read the ETag "
                "(it then fails with etag_missing)"
            )
    return problems


def describe_preflight_problems(
    response: httpx.Response, origin: str, method: str, request_headers: Iterable[str]
) -> list[str]:
    """What makes a CORS preflight answer refuse ``method`` with ``request_headers`` from ``origin``."""
    if not 200 <= response.status_code < 300:
        return [f"OPTIONS answered {response.status_code}; a preflight needs a 2xx answer"]
    problems = describe_cors_problems(response, origin, expose_etag=False)
    methods = header_tokens(response.headers.get("access-control-allow-methods"))
    if method.lower() not in methods and "*" not in methods:
        problems.append(f"Access-Control-Allow-Methods does not allow {method}")
    allowed = header_tokens(response.headers.get("access-control-allow-headers"))
    for name in request_headers:
        # "*" admits every request header except Authorization (Fetch standard).
        wildcard = "*" in allowed and name.lower() != "authorization"
        if name.lower() not in allowed and not wildcard:
            problems.append(f"Access-Control-Allow-Headers does not allow {name}")
    return problems


def http_date_seconds(value: str | None) -> float | None:
    """An HTTP-date as Unix seconds, or ``None`` if absent or unparseable."""
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _matrix_error(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON error body, if the answer is a Matrix error with ``application/json``."""
    if _media_type(response) != "application/json":
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("errcode"), str):
        return None
    return body


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    return None if value is None else value.split(";", 1)[0].strip().lower()


def _lost(response: httpx.Response) -> str:
    """A hint for a 404 about the session this run has just created (and not deleted)."""
    if response.status_code != 404:
        return ""
    return (
        " The session was created moments ago, so this request reached an instance that does not know it "
        "(see the consistency check)."
    )


def _status_text(response: httpx.Response) -> str:
    error = _matrix_error(response)
    if error is not None:
        return f"{response.status_code} {error['errcode']}"
    return str(response.status_code)


def _join(problems: list[str]) -> str:
    return "; ".join(problems) + "."


# -- the run ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cleanup:
    """A session this run created and must delete."""

    url: str
    headers: dict[str, str]
    expect: tuple[int, ...]
    done: bool = False


class _SelfTest:
    """One run: an HTTP client, the results so far and the sessions to clean up."""

    def __init__(
        self,
        options: SelfTestOptions,
        client: httpx.AsyncClient,
        on_result: Callable[[CheckResult], None] | None,
    ) -> None:
        self.options = options
        self.base = normalise_base_url(options.base_url)
        self.client = client
        self.report = SelfTestReport(self.base)
        self._on_result = on_result
        self._cleanups: list[_Cleanup] = []

    # -- plumbing -------------------------------------------------------------------------------------------

    def record(self, name: str, status: Status, message: str) -> None:
        result = CheckResult(name, status, message)
        self.report.results.append(result)
        if self._on_result is not None:
            self._on_result(result)

    def skip(self, names: Iterable[str], reason: str) -> None:
        for name in names:
            self.record(name, Status.SKIP, reason)

    def browser(self, extra: Mapping[str, str] | None = None, *, origin: str | None = None) -> dict[str, str]:
        """Headers of a cross-origin ``fetch()`` from Element Web."""
        return {"Origin": origin or self.options.origin, **_FETCH_METADATA, **(extra or {})}

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """One request; a 429 is waited out (as clients do) a few times. :class:`_RequestFailed` if no answer."""
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            try:
                response = await self.client.request(method, url, headers=headers, content=content, json=json_body)
            except httpx.HTTPError as exc:
                raise _RequestFailed(f"{method} {_where(url)} got no answer ({type(exc).__name__}: {exc})") from None
            if response.status_code != 429 or attempt == _RATE_LIMIT_RETRIES:
                return response
            await asyncio.sleep(_retry_after_s(response))
        raise AssertionError("unreachable")

    # -- whole run ------------------------------------------------------------------------------------------

    async def run(self) -> SelfTestReport:
        try:
            if self.options.gen1:
                await self._guarded("gen1", self.gen1)
            else:
                self.record("gen1", Status.SKIP, "Gen-1 (MSC4108) checks skipped on request.")
            if self.options.gen2:
                await self._guarded("gen2", self.gen2)
            else:
                self.record("gen2", Status.SKIP, "Gen-2 (MSC4388) checks skipped on request.")
        finally:
            await self.cleanup()
        return self.report

    async def _guarded(self, name: str, steps: Callable[[], Any]) -> None:
        try:
            await steps()
        except _RequestFailed as exc:
            self.record(
                f"{name}.reachable",
                Status.FAIL,
                f"{exc}. Check the URL, DNS, TLS certificate and that the proxy forwards these paths.",
            )

    async def cleanup(self) -> None:
        """Delete every session this run created that a check did not already delete."""
        pending = [c for c in self._cleanups if not c.done]
        if not pending:
            return
        failures = 0
        for cleanup in pending:
            for _ in range(_CLEANUP_ATTEMPTS):
                try:
                    response = await self.send("DELETE", cleanup.url, headers=cleanup.headers)
                except _RequestFailed:
                    continue
                if response.status_code in cleanup.expect:
                    cleanup.done = True
                    break
                if response.status_code != 404:
                    continue
                # 404: gone already, or (behind a split load balancer) asked of an instance that never knew it;
                # ask again, and after the last try take it as gone: it expires on its own either way.
                cleanup.done = True
            if not cleanup.done:
                failures += 1
        if failures:
            self.record(
                "cleanup",
                Status.WARN,
                f"{failures} session(s) this test created could not be deleted; they expire on their own.",
            )
        else:
            self.record("cleanup", Status.PASS, f"Deleted the {len(pending)} session(s) left over from failed steps.")

    # -- Gen-1 ----------------------------------------------------------------------------------------------

    async def gen1(self) -> None:
        await self.gen1_discovery()
        created = await self.gen1_create()
        remaining = (
            "gen1.create_headers", "gen1.put", "gen1.etag_strong", "gen1.no_transform", "gen1.content_type",
            "gen1.etag_end_to_end", "gen1.not_modified", "gen1.precondition_failed", "gen1.cors_preflight",
            "gen1.cors_headers", "gen1.consistency", "gen1.ttl", "gen1.delete",
        )  # fmt: skip
        if created is None:
            self.skip(remaining, "Needs a Gen-1 session, and creating one failed.")
            return
        create_url, session_url, post = created
        await Gen1Checks(self, create_url, session_url, post).run()

    async def gen1_discovery(self) -> None:
        name = "gen1.discovery"
        try:
            response = await self.send("GET", self.base + VERSIONS_PATH, headers=self.browser())
        except _RequestFailed as exc:
            self.record(name, Status.WARN, f"{exc}; cannot tell whether clients are offered QR login.")
            return
        if response.status_code != 200:
            self.record(
                name,
                Status.WARN,
                f"GET {VERSIONS_PATH} answered {_status_text(response)}: this URL is not a homeserver (fine when "
                "testing the rendezvous server directly), but Element only offers QR login when the homeserver "
                f"lists {GEN1_FEATURE} there.",
            )
            return
        try:
            features = response.json().get("unstable_features") or {}
        except (ValueError, AttributeError):
            features = {}
        if isinstance(features, dict) and features.get(GEN1_FEATURE) is True:
            self.record(name, Status.PASS, f"{VERSIONS_PATH} advertises {GEN1_FEATURE}.")
        else:
            self.record(
                name,
                Status.WARN,
                f"{VERSIONS_PATH} does not list {GEN1_FEATURE} in unstable_features, so Element's clients will "
                "not offer sign-in with QR. With Synapse set experimental_features.msc4108_enabled or "
                "msc4108_delegation_endpoint (both need the matrix_authentication_service block).",
            )

    async def gen1_create(self) -> tuple[str, str, httpx.Response] | None:
        """POST the empty first payload, following 307s as a browser does; the create URL, session URL, answer."""
        name = "gen1.create"
        url = self.options.gen1_create_url or self.base + GEN1_PATH
        origin = self.options.origin
        hops: list[str] = []
        for _ in range(_MAX_REDIRECTS + 1):
            headers = self.browser({"Content-Type": "text/plain"}, origin=origin)
            response = await self.send("POST", url, headers=headers, content=b"")
            if response.status_code not in (301, 302, 303, 307, 308):
                break
            location = response.headers.get("location")
            if response.status_code not in (307, 308) or location is None:
                self.record(
                    name,
                    Status.FAIL,
                    f"POST {_where(url)} answered {response.status_code} "
                    f"{'without a Location' if location is None else 'redirect'}: only a 307 with a Location "
                    "keeps the method and body (browsers turn 301/302/303 into a GET). With Synapse, "
                    "msc4108_delegation_endpoint sends the right 307.",
                )
                return None
            cors = describe_cors_problems(response, origin, expose_etag=False)
            if cors:
                self.record(
                    name,
                    Status.FAIL,
                    f"The {response.status_code} redirect from {_where(url)} lacks CORS headers, so browsers "
                    f"will not follow it: {_join(cors)}",
                )
                return None
            target = urljoin(url, location)
            hops.append(_where(url))
            if _origin_of(target) != _origin_of(url):
                # Fetch standard: after a cross-origin redirect the request's origin is "tainted" and sent as null.
                origin = "null"
            url = target
        else:
            self.record(name, Status.FAIL, f"POST was redirected more than {_MAX_REDIRECTS} times.")
            return None
        if response.status_code != 201:
            self.record(
                name,
                Status.FAIL,
                f"POST {_where(url)} answered {_status_text(response)}, expected 201 Created. "
                + _create_failure_hint(response),
            )
            return None
        try:
            session_url = response.json()["url"]
        except (ValueError, KeyError, TypeError):
            session_url = None
        if not isinstance(session_url, str) or urlsplit(session_url).scheme not in ("http", "https"):
            self.record(
                name,
                Status.FAIL,
                'The 201 answer has no absolute "url" in its JSON body; clients cannot join the session. Set '
                "public_base_url, or have the proxy send X-Forwarded-Proto/-Host and list it in trusted_proxies.",
            )
            return None
        self._cleanups.append(_Cleanup(session_url, self.browser(origin=origin), (200, 204)))
        via = f" after a redirect from {', '.join(hops)}" if hops else ""
        self.record(name, Status.PASS, f"Created a session at {_where(session_url, path=False)}{via}.")
        return url, session_url, response

    def mark_deleted(self, session_url: str) -> None:
        """A check deleted this session: nothing left to clean up."""
        for cleanup in self._cleanups:
            if cleanup.url == session_url:
                cleanup.done = True

    # -- Gen-2 ----------------------------------------------------------------------------------------------

    async def gen2(self) -> None:
        prefix = self.base + (STABLE_PATH if self.options.gen2_stable else UNSTABLE_PATH)
        remaining = (
            "gen2.create", "gen2.put", "gen2.txn_replay", "gen2.conflict", "gen2.read", "gen2.sec_fetch",
            "gen2.content_type", "gen2.cors_preflight", "gen2.cors_headers", "gen2.consistency", "gen2.ttl",
            "gen2.delete",
        )  # fmt: skip
        if not await self.gen2_discovery(prefix):
            self.skip(remaining, "Needs a Gen-2 session, which discovery does not offer (see gen2.discovery).")
            return
        created = await self.gen2_create(prefix)
        if created is None:
            self.skip(remaining[1:], "Needs a Gen-2 session, and creating one failed.")
            return
        await Gen2Checks(self, prefix, *created).run()

    def auth(self) -> dict[str, str]:
        token = self.options.access_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def gen2_discovery(self, prefix: str) -> bool:
        name = "gen2.discovery"
        response = await self.send("GET", prefix, headers=self.browser(self.auth()))
        if response.status_code != 200:
            error = _matrix_error(response)
            hint = (
                "the Gen-2 API is switched off or not routed to the rendezvous server (with this server: "
                "gen2_create_policy; with Synapse: msc4388_mode). Pass --skip-gen2 if that is intended"
                if response.status_code in (404, 405)
                else "an access token the homeserver refuses"
                if error is not None and error["errcode"] == "M_UNKNOWN_TOKEN"
                else "see the server's log"
            )
            self.record(name, Status.FAIL, f"GET {_where(prefix)} answered {_status_text(response)}: {hint}.")
            return False
        try:
            available = response.json().get("create_available")
        except (ValueError, AttributeError):
            available = None
        if not isinstance(available, bool):
            self.record(
                name,
                Status.FAIL,
                f'GET {_where(prefix)} did not answer {{"create_available": true|false}}; something other than '
                "a rendezvous server answers this path.",
            )
            return False
        if not available:
            self.record(
                name,
                Status.WARN,
                "Discovery says this requester may not create sessions (policy 'authenticated'); pass "
                "--access-token to test session creation as a logged-in device.",
            )
            return False
        self.record(name, Status.PASS, "Discovery answers create_available: true.")
        return True

    async def gen2_create(self, prefix: str) -> tuple[str, str, int, httpx.Response] | None:
        """POST ``{"data": ""}``; the session id, first sequence_token, expires_in_ms and the answer."""
        name = "gen2.create"
        response = await self.send("POST", prefix, headers=self.browser(self.auth()), json_body={"data": ""})
        if response.status_code != 200:
            self.record(
                name,
                Status.FAIL,
                f"POST {_where(prefix)} answered {_status_text(response)}, expected 200. "
                + _create_failure_hint(response),
            )
            return None
        try:
            body = response.json()
            session_id, token, expires_in_ms = body["id"], body["sequence_token"], body["expires_in_ms"]
        except (ValueError, KeyError, TypeError):
            self.record(name, Status.FAIL, 'The answer lacks "id", "sequence_token" or "expires_in_ms".')
            return None
        if not (isinstance(session_id, str) and is_opaque_id(session_id) and isinstance(token, str)):
            self.record(
                name,
                Status.FAIL,
                "The session id or sequence_token is not an opaque identifier (at most 255 characters of "
                "[A-Za-z0-9._~-]); it cannot be carried in a QR code.",
            )
            return None
        if not isinstance(expires_in_ms, int) or isinstance(expires_in_ms, bool):
            self.record(name, Status.FAIL, '"expires_in_ms" is not an integer.')
            return None
        self._cleanups.append(_Cleanup(f"{prefix}/{session_id}", self.browser(), (200,)))
        self.record(name, Status.PASS, "Created a session.")
        return session_id, token, expires_in_ms, response


class Gen1Checks:
    """The Gen-1 checks on one session, in the order a login uses the session."""

    def __init__(self, run: _SelfTest, create_url: str, session_url: str, post: httpx.Response) -> None:
        self.run_ = run
        self.create_url = create_url
        self.url = session_url
        self.post = post
        self.payload = _payload("gen1")
        self.origin = run.options.origin

    def record(self, name: str, status: Status, message: str) -> None:
        self.run_.record(name, status, message)

    async def run(self) -> None:
        run = self.run_
        post = self.post
        self.check_create_headers(post)
        etag0 = post.headers.get("etag")
        put = await run.send(
            "PUT",
            self.url,
            headers=run.browser({"Content-Type": "text/plain", "If-Match": etag0 or '"missing"'}),
            content=self.payload,
        )
        put_ok = self.check_put(put, etag0)
        get = await run.send("GET", self.url, headers=run.browser())
        self.check_etag_strong([("POST", post), ("PUT", put), ("GET", get)])
        self.check_no_transform([post, put, get])
        self.check_content_type(get)
        self.check_etag_end_to_end(put if put_ok else None, get)
        current = get.headers.get("etag")
        await self.check_not_modified(current)
        await self.check_precondition_failed(etag0 if put_ok else '"0000selftest-stale"')
        await self.check_cors_preflight()
        self.check_cors_headers([("POST", post), ("PUT", put), ("GET", get)])
        reads = await self.check_consistency(get)
        self.check_ttl(post, [get, *reads])
        await self.check_delete()

    def check_create_headers(self, post: httpx.Response) -> None:
        missing = [h for h in ("ETag", "Expires", "Last-Modified") if h.lower() not in post.headers]
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
                f"{_join(problems)} Element X (matrix-rust-sdk) refuses such an answer; make the proxy pass "
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
                name, Status.FAIL, f"PUT with If-Match answered {_status_text(put)}, expected 202.{hint}{_lost(put)}"
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
                    f"Cache-Control: no-transform: {_COMPRESSION_FIX}.",
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
            self.record(
                name, Status.FAIL, f"GET on the session answered {_status_text(get)}, expected 200.{_lost(get)}"
            )
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
            self.record(name, Status.FAIL, f"GET after the PUT answered {_status_text(get)}.")
            return
        if get.content != self.payload:
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
        run = self.run_
        response = await run.send("GET", self.url, headers=run.browser({"If-None-Match": current}))
        if response.status_code != 304:
            self.record(
                name,
                Status.FAIL,
                f"GET with If-None-Match of the current ETag answered {_status_text(response)}, expected 304."
                + (
                    _lost(response)
                    or " A proxy drops If-None-Match or answers from a cache; clients then re-read every second."
                ),
            )
            return
        missing = [h for h in ("ETag", "Expires", "Last-Modified") if h.lower() not in response.headers]
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

    async def check_precondition_failed(self, stale: str | None) -> None:
        name = "gen1.precondition_failed"
        run = self.run_
        response = await run.send(
            "PUT",
            self.url,
            headers=run.browser({"Content-Type": "text/plain", "If-Match": stale or '"0000selftest-stale"'}),
            content=b"stale write",
        )
        if response.status_code != 412:
            self.record(
                name,
                Status.FAIL,
                f"PUT with an outdated ETag answered {_status_text(response)}, expected 412: concurrent writes "
                "are not detected, or a proxy drops If-Match.",
            )
            return
        error = _matrix_error(response)
        if error is None or error.get("org.matrix.msc4108.errcode") != "M_CONCURRENT_WRITE":
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

    async def check_cors_preflight(self) -> None:
        run = self.run_
        wanted = [
            (self.create_url, "POST", ["Content-Type"]),
            (self.url, "PUT", ["Content-Type", "If-Match"]),
            (self.url, "GET", ["If-None-Match"]),
            (self.url, "DELETE", []),
        ]
        await _preflights(run, "gen1.cors_preflight", wanted)

    def check_cors_headers(self, answers: list[tuple[str, httpx.Response]]) -> None:
        name = "gen1.cors_headers"
        for label, response in answers:
            problems = describe_cors_problems(response, self.origin, expose_etag=True)
            if problems:
                self.record(
                    name,
                    Status.FAIL,
                    f"On the {label} answer: {_join(problems)} Let the proxy pass the server's CORS headers "
                    "through (and not add its own).",
                )
                return
        self.record(name, Status.PASS, "Access-Control-Allow-Origin and Expose-Headers: ETag arrived on every answer.")

    async def check_consistency(self, first: httpx.Response) -> list[httpx.Response]:
        """GET the session ``repeat`` times on fresh connections; all must see the same session state."""
        name = "gen1.consistency"
        run = self.run_
        reads = await _repeat_reads(run, self.url, {})
        expected_etag = first.headers.get("etag")
        missing = sum(r.status_code == 404 for r in reads)
        other = [r for r in reads if r.status_code not in (200, 404)]
        differing = [
            r
            for r in reads
            if r.status_code == 200 and (r.headers.get("etag") != expected_etag or r.content != first.content)
        ]
        total = len(reads)
        if missing:
            self.record(name, Status.FAIL, _split_message(missing, total))
        elif other:
            self.record(name, Status.FAIL, f"{len(other)} of {total} GETs answered {_status_text(other[0])}.")
        elif differing:
            self.record(
                name,
                Status.FAIL,
                f"{len(differing)} of {total} GETs saw a different payload or ETag: the instances behind this "
                "address do not share one store, or a cache serves stale answers.",
            )
        else:
            self.record(name, Status.PASS, f"{total} GETs on fresh connections all saw the session and its ETag.")
        return reads

    def check_ttl(self, post: httpx.Response, reads: list[httpx.Response]) -> None:
        name = "gen1.ttl"
        expires = http_date_seconds(post.headers.get("expires"))
        if expires is None:
            self.record(name, Status.FAIL, "The 201 has no usable Expires date, so clients cannot tell the lifetime.")
            return
        server_now = http_date_seconds(post.headers.get("date"))
        local_now = time.time()
        now = server_now if server_now is not None else local_now
        lifetime = expires - now
        if lifetime <= 0:
            self.record(name, Status.FAIL, "The new session's Expires lies in the past: clients give it up at once.")
            return
        moved = {r.headers.get("expires") for r in reads if r.status_code == 200 and "expires" in r.headers} - {
            post.headers.get("expires")
        }
        if moved:
            self.record(
                name,
                Status.WARN,
                "Expires changed between requests; it should be fixed at creation. Instances behind this "
                "address may disagree, or writes extend sessions.",
            )
            return
        if server_now is not None and abs(server_now - local_now) > _MAX_CLOCK_SKEW_S:
            self.record(
                name,
                Status.WARN,
                f"The server's clock is {server_now - local_now:+.0f} s off this machine's; js-sdk compares "
                "Expires with the browser's clock (matrix-js-sdk #5141), so logins may be cut short. Sync the "
                "server's clock (NTP).",
            )
            return
        if lifetime < _GEN1_MIN_TTL_S - 2:
            self.record(
                name,
                Status.WARN,
                f"Sessions are advertised to live {lifetime:.0f} s; under {_GEN1_MIN_TTL_S} s leaves too little "
                "time to scan and confirm.",
            )
            return
        self.record(name, Status.PASS, f"Sessions are advertised to live {lifetime:.0f} s, and Expires stays fixed.")

    async def check_delete(self) -> None:
        name = "gen1.delete"
        run = self.run_
        response = await run.send("DELETE", self.url, headers=run.browser())
        if response.status_code not in (200, 204):
            self.record(name, Status.FAIL, f"DELETE answered {_status_text(response)}, expected 204.{_lost(response)}")
            return
        run.mark_deleted(self.url)
        after = await run.send("GET", self.url, headers=run.browser())
        if after.status_code != 404:
            self.record(
                name,
                Status.FAIL,
                f"After DELETE the session still answers {_status_text(after)}; expected 404 (clients treat "
                "404 as cancelled).",
            )
            return
        self.record(name, Status.PASS, "DELETE answered 204, and the session is gone (404) afterwards.")


class Gen2Checks:
    """The Gen-2 checks on one session."""

    def __init__(
        self, run: _SelfTest, prefix: str, session_id: str, token: str, expires_in_ms: int, post: httpx.Response
    ) -> None:
        self.run_ = run
        self.prefix = prefix
        self.url = f"{prefix}/{session_id}"
        self.token = token
        self.expires_in_ms = expires_in_ms
        self.created_at = time.monotonic()
        self.post = post
        self.data = _payload("gen2").decode()
        self.errcode = STABLE_CONCURRENT_WRITE if run.options.gen2_stable else UNSTABLE_CONCURRENT_WRITE
        self.with_txn = True
        self.txn = secrets.token_urlsafe(16)
        self.answers: list[tuple[str, httpx.Response]] = [("POST", post)]

    def record(self, name: str, status: Status, message: str) -> None:
        self.run_.record(name, status, message)

    async def send(self, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.run_.send(method, url, **kwargs)
        self.answers.append((label, response))
        return response

    async def run(self) -> None:
        new_token = await self.check_put()
        await self.check_txn_replay(new_token)
        await self.check_conflict()
        read = await self.check_read(new_token)
        await self.check_sec_fetch()
        await self.check_cors_preflight()
        self.check_content_type()
        self.check_cors_headers()
        reads = await self.check_consistency(read)
        self.check_ttl(read, reads)
        await self.check_delete()

    async def check_put(self) -> str | None:
        name = "gen2.put"
        run = self.run_
        body = {"sequence_token": self.token, "data": self.data}
        response = await self.send("PUT", "PUT", f"{self.url}/{self.txn}", headers=run.browser(), json_body=body)
        if response.status_code in (404, 405) and (_matrix_error(response) or {}).get("errcode") != "M_NOT_FOUND":
            # Synapse 1.157+ and ruma implement the PUT without a txnId only.
            self.with_txn = False
            response = await self.send("PUT", "PUT", self.url, headers=run.browser(), json_body=body)
        if response.status_code != 200:
            self.record(
                name,
                Status.FAIL,
                f"PUT with the current sequence_token answered {_status_text(response)}, expected 200."
                + _lost(response),
            )
            return None
        token = _json_field(response, "sequence_token")
        if not isinstance(token, str) or token == self.token:
            self.record(name, Status.FAIL, "The PUT answer lacks a new sequence_token; it must change on every write.")
            return None
        if not self.with_txn:
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
        if new_token is None or not self.with_txn:
            self.record(name, Status.SKIP, "Needs a successful PUT with a txnId.")
            return
        run = self.run_
        body = {"sequence_token": self.token, "data": self.data}
        response = await self.send("PUT", "PUT", f"{self.url}/{self.txn}", headers=run.browser(), json_body=body)
        if response.status_code != 200 or _json_field(response, "sequence_token") != new_token:
            self.record(
                name,
                Status.FAIL,
                f"Repeating the PUT with the same txnId answered {_status_text(response)} instead of the recorded "
                "200 with the same sequence_token; a client retrying after a lost answer would see a conflict. "
                "The txnId records are not shared between the instances behind this address, or expired early.",
            )
            return
        self.record(name, Status.PASS, "Repeating a PUT with the same txnId returned the recorded answer.")

    async def check_conflict(self) -> None:
        name = "gen2.conflict"
        run = self.run_
        body = {"sequence_token": self.token, "data": "stale write"}
        url = f"{self.url}/{secrets.token_urlsafe(16)}" if self.with_txn else self.url
        response = await self.send("PUT", "PUT", url, headers=run.browser(), json_body=body)
        if response.status_code != 409:
            self.record(
                name,
                Status.FAIL,
                f"PUT with an outdated sequence_token answered {_status_text(response)}, expected 409: "
                "concurrent writes are not detected.",
            )
            return
        error = _matrix_error(response)
        if error is None or error["errcode"] != self.errcode:
            seen = "a non-JSON body" if error is None else f"errcode {error['errcode']}"
            self.record(
                name,
                Status.FAIL,
                f"The 409 carries {seen}, expected errcode {self.errcode} as JSON; clients look for that "
                "errcode to re-read and retry. A proxy may replace error bodies.",
            )
            return
        self.record(name, Status.PASS, f"PUT with an outdated sequence_token answered 409 {self.errcode}.")

    async def check_read(self, new_token: str | None) -> httpx.Response:
        name = "gen2.read"
        run = self.run_
        response = await self.send("GET", "GET", self.url, headers=run.browser())
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
                f"GET as a browser fetch() answered {_status_text(response)}, expected 200.{hint}{_lost(response)}",
            )
            return response
        body = _json_object(response)
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
        run = self.run_
        headers = {"Origin": run.options.origin, **_NAVIGATION_METADATA}
        response = await run.send("GET", self.url, headers=headers)
        error = _matrix_error(response)
        if response.status_code == 403 and error is not None and error["errcode"] == "M_FORBIDDEN":
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
                name, Status.FAIL, f"A navigation GET answered {_status_text(response)}, expected 403 M_FORBIDDEN."
            )

    async def check_cors_preflight(self) -> None:
        txn_url = f"{self.url}/{secrets.token_urlsafe(16)}" if self.with_txn else self.url
        wanted = [
            (self.prefix, "POST", ["Content-Type", "Authorization"]),
            (txn_url, "PUT", ["Content-Type"]),
            (self.url, "GET", []),
            (self.url, "DELETE", []),
        ]
        await _preflights(self.run_, "gen2.cors_preflight", wanted)

    def check_content_type(self) -> None:
        name = "gen2.content_type"
        for label, response in self.answers:
            if response.content and _media_type(response) != "application/json":
                self.record(
                    name,
                    Status.FAIL,
                    f"The {label} answer has Content-Type {response.headers.get('content-type')!r}, expected "
                    "application/json: something replaced the server's answer.",
                )
                return
        self.record(name, Status.PASS, "Every answer was application/json.")

    def check_cors_headers(self) -> None:
        name = "gen2.cors_headers"
        for label, response in self.answers:
            problems = describe_cors_problems(response, self.run_.options.origin, expose_etag=False)
            if problems:
                self.record(name, Status.FAIL, f"On the {label} answer: {_join(problems)}")
                return
        self.record(name, Status.PASS, "Access-Control-Allow-Origin arrived on every answer.")

    async def check_consistency(self, first: httpx.Response) -> list[httpx.Response]:
        name = "gen2.consistency"
        reads = await _repeat_reads(self.run_, self.url, {})
        total = len(reads)
        expected = _json_object(first)
        missing = sum(r.status_code == 404 for r in reads)
        other = [r for r in reads if r.status_code not in (200, 404)]
        differing = [
            r
            for r in reads
            if r.status_code == 200
            and {k: _json_object(r).get(k) for k in ("data", "sequence_token")}
            != {k: expected.get(k) for k in ("data", "sequence_token")}
        ]
        if missing:
            self.record(name, Status.FAIL, _split_message(missing, total))
        elif other:
            self.record(name, Status.FAIL, f"{len(other)} of {total} GETs answered {_status_text(other[0])}.")
        elif differing:
            self.record(
                name,
                Status.FAIL,
                f"{len(differing)} of {total} GETs saw a different data or sequence_token: the instances behind "
                "this address do not share one store, or a cache serves stale answers.",
            )
        else:
            self.record(
                name, Status.PASS, f"{total} GETs on fresh connections all saw the session and its sequence_token."
            )
        return reads

    def check_ttl(self, read: httpx.Response, reads: list[httpx.Response]) -> None:
        name = "gen2.ttl"
        initial = self.expires_in_ms
        if initial <= 0:
            self.record(name, Status.FAIL, f"The new session reports expires_in_ms = {initial}: it is already over.")
            return
        # Each later reading may be at most the initial lifetime minus the time since creation (plus slack):
        # more means writes extend sessions or instances disagree about them.
        for response in [read, *reads]:
            value = _json_object(response).get("expires_in_ms") if response.status_code == 200 else None
            if not isinstance(value, int):
                continue
            elapsed_ms = (time.monotonic() - self.created_at) * 1000
            if value > initial + _TTL_SLACK_MS or value < initial - elapsed_ms - _TTL_SLACK_MS:
                self.record(
                    name,
                    Status.FAIL,
                    f"expires_in_ms went from {initial} at creation to {value} {elapsed_ms / 1000:.1f} s later; it "
                    "should count down from creation (writes do not extend sessions). The instances behind this "
                    "address disagree, or their clocks do.",
                )
                return
        if not _GEN2_MIN_TTL_MS <= initial <= _GEN2_MAX_TTL_MS + _TTL_SLACK_MS:
            self.record(
                name,
                Status.WARN,
                f"Sessions live {initial / 1000:.0f} s; MSC4388 asks for between {_GEN2_MIN_TTL_MS // 1000} and "
                f"{_GEN2_MAX_TTL_MS // 1000} s.",
            )
            return
        self.record(name, Status.PASS, f"Sessions live {initial / 1000:.0f} s and count down consistently.")

    async def check_delete(self) -> None:
        name = "gen2.delete"
        run = self.run_
        response = await run.send("DELETE", self.url, headers=run.browser())
        if response.status_code != 200:
            self.record(name, Status.FAIL, f"DELETE answered {_status_text(response)}, expected 200.{_lost(response)}")
            return
        run.mark_deleted(self.url)
        after = await run.send("GET", self.url, headers=run.browser())
        error = _matrix_error(after)
        if after.status_code != 404 or error is None or error["errcode"] != "M_NOT_FOUND":
            self.record(
                name, Status.FAIL, f"After DELETE the session answers {_status_text(after)}, expected 404 M_NOT_FOUND."
            )
            return
        self.record(name, Status.PASS, "DELETE answered 200, and the session is gone (404 M_NOT_FOUND) afterwards.")


# -- helpers shared by both generations ---------------------------------------------------------------------


async def _preflights(run: _SelfTest, name: str, wanted: list[tuple[str, str, list[str]]]) -> None:
    origin = run.options.origin
    for url, method, request_headers in wanted:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": method,
            **(
                {"Access-Control-Request-Headers": ", ".join(h.lower() for h in request_headers)}
                if request_headers
                else {}
            ),
            **_FETCH_METADATA,
        }
        response = await run.send("OPTIONS", url, headers=headers)
        problems = describe_preflight_problems(response, origin, method, request_headers)
        if problems:
            run.record(
                name,
                Status.FAIL,
                f"The preflight for {method} {_where(url)}: {_join(problems)} Browsers then refuse the request. "
                "Let OPTIONS through to the rendezvous server (or answer it with the same headers).",
            )
            return
    run.record(name, Status.PASS, "CORS preflights allow every method and header the clients send.")


async def _repeat_reads(run: _SelfTest, url: str, extra: Mapping[str, str]) -> list[httpx.Response]:
    """``repeat`` GETs as a native client (no Origin), each on a new connection, as load balancers see them."""
    reads = []
    for _ in range(run.options.repeat):
        reads.append(await run.send("GET", url, headers={"Connection": "close", **extra}))
    return reads


def _split_message(missing: int, total: int) -> str:
    return (
        f"{missing} of {total} GETs on fresh connections answered 404 for a live session: the address "
        "load-balances between instances that do not share sessions. Run one instance, or point every "
        "instance and worker at the same Redis (store_url = redis://…); sticky sessions do not help, the two "
        "devices of a login are different clients."
    )


def _create_failure_hint(response: httpx.Response) -> str:
    error = _matrix_error(response)
    if response.status_code == 404:
        return "Nothing serves the rendezvous create path here: route it to the rendezvous server (docs/deployment.md)."
    if response.status_code == 405:
        return "The path exists but refuses POST: a proxy or static site answers it instead of the rendezvous server."
    if response.status_code == 403:
        return "The server refuses to create sessions for this requester."
    if response.status_code == 413:
        return "A proxy limits the body below what clients send."
    if response.status_code == 429:
        return "Rate limited even after waiting as asked; try again later."
    if error is None and response.status_code >= 500:
        return "A proxy answered with an error page: the rendezvous server may be down."
    return "See the server's log."


def _payload(label: str) -> bytes:
    unit = f"qrlink rendezvous selftest {label} payload; "
    return (unit * (_PAYLOAD_SIZE // len(unit) + 1)).encode()[:_PAYLOAD_SIZE]


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_field(response: httpx.Response, key: str) -> Any:
    return _json_object(response).get(key)


def _retry_after_s(response: httpx.Response) -> float:
    seconds: float = 1.0
    header = response.headers.get("retry-after")
    if header is not None and header.strip().isdigit():
        seconds = float(header.strip())
    else:
        value = _json_field(response, "retry_after_ms")
        if isinstance(value, int):
            seconds = value / 1000
    return min(max(seconds, 0.1), _MAX_RATE_LIMIT_WAIT_S)


def _origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _where(url: str, *, path: bool = True) -> str:
    """``url`` without the session id: ids are capabilities and stay out of reports."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}"
    if not path:
        return where
    for prefix in (GEN1_PATH, UNSTABLE_PATH, STABLE_PATH, VERSIONS_PATH):
        if parts.path.startswith(prefix):
            rest = "/…" if len(parts.path) > len(prefix) else ""
            return f"{where}{parts.path[: parts.path.index(prefix) + len(prefix)]}{rest}"
    return f"{where}{parts.path.rsplit('/', 1)[0]}/…" if parts.path.count("/") > 1 else f"{where}{parts.path}"


def normalise_base_url(base_url: str) -> str:
    """``base_url`` with a scheme (``https://`` if none) and without a trailing slash."""
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    return base_url.rstrip("/")


async def run_selftest(
    options: SelfTestOptions,
    *,
    on_result: Callable[[CheckResult], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SelfTestReport:
    """Run every check against ``options.base_url``; ``on_result`` sees each result as it is made.

    Never raises for what the server does: unreachable hosts and broken answers become failed checks.
    """
    async with httpx.AsyncClient(
        timeout=options.timeout_s,
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": f"rendezvous-selftest/{__version__}", "Accept-Encoding": _ACCEPT_ENCODING},
    ) as client:
        return await _SelfTest(options, client, on_result).run()


# -- output -------------------------------------------------------------------------------------------------

_LABELS = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.WARN: "WARN", Status.SKIP: "skip"}


def format_result(result: CheckResult) -> str:
    """One line per check: verdict, name, explanation."""
    return f"  {_LABELS[result.status]:<4}  {result.name:<26} {result.message}"


def format_summary(report: SelfTestReport) -> str:
    """The closing line of a human-readable run."""
    counts = report.counts()
    verdict = "OK" if report.ok else "FAILED"
    return (
        f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, {counts['warn']} warnings, "
        f"{counts['skip']} skipped."
    )


def report_json(report: SelfTestReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.as_dict(), indent=2)
