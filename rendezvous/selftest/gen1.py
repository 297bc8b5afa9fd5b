"""Gen-1 (MSC4108) as the self-test drives it: ``text/plain`` bodies, ETags, and a create that may redirect."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import httpx

from ..protocol import GEN1_PATH
from .adapter import Created, GenerationAdapter, Preflight
from .answers import create_failure_hint, join, json_field, status_text
from .client import origin_of, where
from .report import Status
from .verdicts import describe_cors_problems, http_date_seconds

_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
#: MSC4108 suggests 60 s; shorter leaves no time to scan and confirm.
_GEN1_MIN_TTL_S = 60
#: Clock skew beyond which js-sdk's use of ``Expires`` as an absolute time (matrix-js-sdk #5141) bites.
_MAX_CLOCK_SKEW_S = 30


class Gen1(GenerationAdapter):
    """The Gen-1 session API: POST to create, PUT with If-Match, GET (If-None-Match), DELETE."""

    name = "gen1"
    version_name = "ETag"
    state_words = "payload or ETag"
    exposes_version_header = True
    delete_status = 204
    delete_statuses = (200, 204)
    gone_text = "404"
    # Two seconds' slack: the lifetime is read from whole-second HTTP dates.
    lifetime_bounds_s = (_GEN1_MIN_TTL_S - 2, float("inf"))
    drift_status = Status.WARN

    async def create(self) -> Created | None:
        """POST the empty first payload, following 307s as a browser does."""
        name = "gen1.create"
        url = self.run.options.gen1_create_url or self.run.base + GEN1_PATH
        origin = self.run.options.origin
        hops: list[str] = []
        for _ in range(_MAX_REDIRECTS + 1):
            headers = self.http.browser({"Content-Type": "text/plain"}, origin=origin)
            response = await self.http.send("POST", url, headers=headers, content=b"")
            if response.status_code not in _REDIRECTS:
                break
            problem = self._redirect_problem(url, response, origin)
            if problem is not None:
                self.run.record(name, Status.FAIL, problem)
                return None
            target = urljoin(url, response.headers["location"])
            if not self.http.allows(target):
                problem = f"POST {where(url)} redirects elsewhere: {self.http.foreign(target)}"
                self.run.record(name, Status.FAIL, problem)
                return None
            hops.append(where(url))
            if origin_of(target) != origin_of(url):
                # Fetch standard: after a cross-origin redirect the request's origin is "tainted" and sent as null.
                origin = "null"
            url = target
        else:
            self.run.record(name, Status.FAIL, f"POST was redirected more than {_MAX_REDIRECTS} times.")
            return None
        session_url = self._session_url(url, response)
        if session_url is None:
            return None
        if not self.http.allows(session_url):
            problem = f"The session URL is on another origin: {self.http.foreign(session_url)}"
            self.run.record(name, Status.FAIL, problem)
            return None
        self.run.cleanups.created(session_url, self.http.browser(origin=origin), self.delete_statuses)
        via = f" after a redirect from {', '.join(hops)}" if hops else ""
        self.run.record(name, Status.PASS, f"Created a session at {where(session_url, path=False)}{via}.")
        return Created(url, session_url, response, response.headers.get("etag"), time.monotonic())

    @staticmethod
    def _redirect_problem(url: str, response: httpx.Response, origin: str) -> str | None:
        """Why a browser would not follow this redirect of the create POST, if it would not."""
        location = response.headers.get("location")
        if response.status_code not in (307, 308) or location is None:
            return (
                f"POST {where(url)} answered {response.status_code} "
                f"{'without a Location' if location is None else 'redirect'}: only a 307 with a Location "
                "keeps the method and body (browsers turn 301/302/303 into a GET). With Synapse, "
                "msc4108_delegation_endpoint sends the right 307."
            )
        cors = describe_cors_problems(response, origin, expose_etag=False)
        if cors:
            return (
                f"The {response.status_code} redirect from {where(url)} lacks CORS headers, so browsers "
                f"will not follow it: {join(cors)}"
            )
        return None

    def _session_url(self, url: str, response: httpx.Response) -> str | None:
        """The session URL from the create answer; records the failure if there is none."""
        name = "gen1.create"
        if response.status_code != 201:
            self.run.record(
                name,
                Status.FAIL,
                f"POST {where(url)} answered {status_text(response)}, expected 201 Created. "
                + create_failure_hint(response),
            )
            return None
        session_url = json_field(response, "url")
        if not isinstance(session_url, str) or urlsplit(session_url).scheme not in ("http", "https"):
            self.run.record(
                name,
                Status.FAIL,
                'The 201 answer has no absolute "url" in its JSON body; clients cannot join the session. Set '
                "public_base_url, or have the proxy send X-Forwarded-Proto/-Host and list it in trusted_proxies.",
            )
            return None
        return session_url

    async def write(self, created: Created, version: str, data: str) -> httpx.Response:
        headers = self.http.browser({"Content-Type": "text/plain", "If-Match": version})
        return await self.http.send("PUT", created.url, headers=headers, content=data.encode())

    def is_gone(self, response: httpx.Response) -> bool:
        return response.status_code == 404

    def version(self, response: httpx.Response) -> str | None:
        etag: str | None = response.headers.get("etag")
        return etag

    def payload(self, response: httpx.Response) -> object:
        return response.content

    def preflights(self, created: Created) -> list[Preflight]:
        return [
            Preflight(created.create_url, "POST", ("Content-Type",)),
            Preflight(created.url, "PUT", ("Content-Type", "If-Match")),
            Preflight(created.url, "GET", ("If-None-Match",)),
            Preflight(created.url, "DELETE"),
        ]

    # -- lifetime: an absolute Expires date, fixed at creation -----------------------------------------

    def lifetime_s(self, created: Created) -> float | None:
        expires = http_date_seconds(created.answer.headers.get("expires"))
        if expires is None:
            return None
        server_now = http_date_seconds(created.answer.headers.get("date"))
        return expires - (server_now if server_now is not None else time.time())

    def lifetime_unreadable(self) -> str:
        return "The 201 has no usable Expires date, so clients cannot tell the lifetime."

    def lifetime_over(self, created: Created) -> str:
        return "The new session's Expires lies in the past: clients give it up at once."

    def lifetime_drift(self, created: Created, reads: list[httpx.Response]) -> str | None:
        first = created.answer.headers.get("expires")
        moved = {r.headers.get("expires") for r in reads if r.status_code == 200 and "expires" in r.headers} - {first}
        if not moved:
            return None
        return (
            "Expires changed between requests; it should be fixed at creation. Instances behind this "
            "address may disagree, or writes extend sessions."
        )

    def clock_problem(self, created: Created) -> str | None:
        server_now = http_date_seconds(created.answer.headers.get("date"))
        local_now = time.time()
        if server_now is None or abs(server_now - local_now) <= _MAX_CLOCK_SKEW_S:
            return None
        return (
            f"The server's clock is {server_now - local_now:+.0f} s off this machine's; js-sdk compares "
            "Expires with the browser's clock (matrix-js-sdk #5141), so logins may be cut short. Sync the "
            "server's clock (NTP)."
        )

    def lifetime_out_of_bounds(self, seconds: float) -> str:
        return (
            f"Sessions are advertised to live {seconds:.0f} s; under {_GEN1_MIN_TTL_S} s leaves too little "
            "time to scan and confirm."
        )

    def lifetime_fine(self, seconds: float) -> str:
        return f"Sessions are advertised to live {seconds:.0f} s, and Expires stays fixed."
