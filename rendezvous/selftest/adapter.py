"""One interface to both generations, so that the checks they share are written once.

Gen-1 and Gen-2 differ in how a session is created, written and deleted and in how its version shows (an
``ETag`` header, a ``sequence_token`` field), not in what a deployment must get right about them: every
instance must see the same session, its lifetime must be fixed at creation, a DELETE must end it, and browsers
must be let in. A :class:`GenerationAdapter` describes the differences; :mod:`.shared_probes` checks the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import httpx

from .context import Run
from .report import Status

#: A payload that compresses well (a proxy with a size threshold still compresses it) and that fits the
#: smallest limit a client could live with: real MSC4108 messages run to a few hundred bytes up to ~3 KiB.
_PAYLOAD_SIZE = 1536


@dataclass(frozen=True, slots=True)
class Created:
    """A session this run has just created, as the creating client holds it."""

    #: Where it was created: Gen-1's create URL (after any redirect), Gen-2's prefix.
    create_url: str
    #: The session's own URL.
    url: str
    #: The create answer.
    answer: httpx.Response
    #: The version the create answer gave: Gen-1's ETag, Gen-2's sequence_token.
    version: str | None
    #: ``time.monotonic()`` when the create answer arrived.
    created_at: float


@dataclass(frozen=True, slots=True)
class Preflight:
    """A cross-origin request a client makes, and so a CORS preflight a browser sends first."""

    url: str
    method: str
    request_headers: tuple[str, ...] = ()


class GenerationAdapter(abc.ABC):
    """How one generation creates, reads, writes and deletes a session, and how its version shows."""

    #: The prefix of this generation's check names.
    name: ClassVar[str]
    #: What carries the version: ``ETag`` or ``sequence_token``.
    version_name: ClassVar[str]
    #: What two reads of an unchanged session must agree on, in words.
    state_words: ClassVar[str]
    #: Whether browsers must be able to read a response header (Gen-1's ETag) and so need it exposed.
    exposes_version_header: ClassVar[bool]
    #: The status a DELETE answers, and every status taken as success.
    delete_status: ClassVar[int]
    delete_statuses: ClassVar[tuple[int, ...]]
    #: What a deleted session answers, in words.
    gone_text: ClassVar[str]
    #: The lifetime (seconds) clients can live with; outside it is a warning.
    lifetime_bounds_s: ClassVar[tuple[float, float]]
    #: How bad it is when later answers disagree about the lifetime.
    drift_status: ClassVar[Status]

    def __init__(self, run: Run) -> None:
        self.run = run
        self.http = run.http

    # -- the session's life -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def create(self) -> Created | None:
        """Create a session as a client does and record ``<name>.create``; ``None`` if that failed."""

    async def read(self, url: str, extra: Mapping[str, str] | None = None) -> httpx.Response:
        """GET the session as a browser ``fetch()``."""
        return await self.http.send("GET", url, headers=self.http.browser(extra))

    @abc.abstractmethod
    async def write(self, created: Created, version: str, data: str) -> httpx.Response:
        """Write ``data`` over the session, claiming ``version`` is current."""

    async def delete(self, url: str) -> httpx.Response:
        """DELETE the session as a browser ``fetch()``."""
        return await self.http.send("DELETE", url, headers=self.http.browser())

    @abc.abstractmethod
    def is_gone(self, response: httpx.Response) -> bool:
        """Whether a read answered that the session does not exist."""

    # -- what a reader sees -----------------------------------------------------------------------------

    @abc.abstractmethod
    def version(self, response: httpx.Response) -> str | None:
        """The session version an answer shows."""

    @abc.abstractmethod
    def payload(self, response: httpx.Response) -> object:
        """The session payload a read answer shows."""

    def state(self, response: httpx.Response) -> tuple[object, object]:
        """What two reads of an unchanged session must agree on."""
        return self.payload(response), self.version(response)

    # -- what browsers ask first ------------------------------------------------------------------------

    @abc.abstractmethod
    def preflights(self, created: Created) -> list[Preflight]:
        """The cross-origin requests a login makes on this session."""

    # -- the session's lifetime -------------------------------------------------------------------------

    @abc.abstractmethod
    def lifetime_s(self, created: Created) -> float | None:
        """How long the create answer says the session lives; ``None`` if it does not say."""

    @abc.abstractmethod
    def lifetime_unreadable(self) -> str:
        """Why the lifetime could not be read."""

    @abc.abstractmethod
    def lifetime_over(self, created: Created) -> str:
        """What is wrong when a new session is already over."""

    @abc.abstractmethod
    def lifetime_drift(self, created: Created, reads: list[httpx.Response]) -> str | None:
        """What later reads say about the lifetime that disagrees with the create answer, if anything."""

    def clock_problem(self, created: Created) -> str | None:
        """What a skewed server clock breaks, if this generation shows lifetimes as absolute times."""
        return None

    @abc.abstractmethod
    def lifetime_out_of_bounds(self, seconds: float) -> str:
        """Why a lifetime outside :attr:`lifetime_bounds_s` is a problem."""

    @abc.abstractmethod
    def lifetime_fine(self, seconds: float) -> str:
        """What a good lifetime looks like, in words."""


def sample_payload(label: str) -> str:
    """A payload of the size real login messages have, marked as the self-test's."""
    unit = f"qrlink rendezvous selftest {label} payload; "
    return (unit * (_PAYLOAD_SIZE // len(unit) + 1))[:_PAYLOAD_SIZE]
