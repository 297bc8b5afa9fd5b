"""Gen-2 (MSC4388) as the self-test drives it: JSON bodies, sequence_tokens, txnIds and expires_in_ms."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx

from ..protocol import (
    GEN2_STABLE_CONCURRENT_WRITE,
    GEN2_STABLE_PATH,
    GEN2_UNSTABLE_CONCURRENT_WRITE,
    GEN2_UNSTABLE_PATH,
    M_NOT_FOUND,
    is_opaque_id,
)
from .adapter import Created, GenerationAdapter, Preflight
from .answers import create_failure_hint, errcode, json_field, json_object, status_text
from .client import where
from .context import Run
from .report import Status

#: MSC4388: a session should live at least 120 s and at most 300 s.
_GEN2_MIN_TTL_MS = 120_000
_GEN2_MAX_TTL_MS = 300_000
#: Slack for comparing lifetimes read at different moments (network time, whole-second HTTP dates).
_TTL_SLACK_MS = 2_500


def new_txn_id() -> str:
    """A fresh transaction id for a PUT."""
    return secrets.token_urlsafe(16)


class Gen2(GenerationAdapter):
    """The Gen-2 session API under the unstable or the stable prefix."""

    name = "gen2"
    version_name = "sequence_token"
    state_words = "data or sequence_token"
    exposes_version_header = False
    delete_status = 200
    delete_statuses = (200,)
    gone_text = f"404 {M_NOT_FOUND}"
    lifetime_bounds_s = (_GEN2_MIN_TTL_MS / 1000, (_GEN2_MAX_TTL_MS + _TTL_SLACK_MS) / 1000)
    drift_status = Status.FAIL

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        stable = run.options.gen2_stable
        self.prefix = run.base + (GEN2_STABLE_PATH if stable else GEN2_UNSTABLE_PATH)
        #: The errcode of a concurrent write: namespaced under the unstable prefix.
        self.concurrent_write = GEN2_STABLE_CONCURRENT_WRITE if stable else GEN2_UNSTABLE_CONCURRENT_WRITE
        #: Whether writes carry a txnId (``PUT …/{id}/{txnId}``); servers without it only route ``PUT …/{id}``.
        self.with_txn = True

    async def create(self) -> Created | None:
        """POST ``{"data": ""}`` (with the access token, if any)."""
        name = "gen2.create"
        prefix = self.prefix
        headers = self.http.browser(self.http.auth())
        response = await self.http.send("POST", prefix, headers=headers, json_body={"data": ""})
        if response.status_code != 200:
            hint = create_failure_hint(response)
            self.run.record(
                name, Status.FAIL, f"POST {where(prefix)} answered {status_text(response)}, expected 200. {hint}"
            )
            return None
        body = json_object(response)
        problem = _create_answer_problem(body)
        if problem is not None:
            self.run.record(name, Status.FAIL, problem)
            return None
        url = f"{prefix}/{body['id']}"
        self.run.cleanups.created(url, self.http.browser(), self.delete_statuses)
        self.run.record(name, Status.PASS, "Created a session.")
        return Created(prefix, url, response, body["sequence_token"], time.monotonic())

    def write_url(self, created: Created, txn: str | None = None) -> str:
        """Where a PUT goes: under a txnId (``txn``, or a fresh one) unless the server lacks that route."""
        return f"{created.url}/{txn or new_txn_id()}" if self.with_txn else created.url

    async def write(self, created: Created, version: str, data: str, *, txn: str | None = None) -> httpx.Response:
        body = {"sequence_token": version, "data": data}
        return await self.http.send("PUT", self.write_url(created, txn), headers=self.http.browser(), json_body=body)

    def is_gone(self, response: httpx.Response) -> bool:
        return response.status_code == 404 and errcode(response) == M_NOT_FOUND

    def version(self, response: httpx.Response) -> str | None:
        token = json_field(response, "sequence_token")
        return token if isinstance(token, str) else None

    def payload(self, response: httpx.Response) -> object:
        return json_field(response, "data")

    def state(self, response: httpx.Response) -> tuple[object, object]:
        # The raw field, not :meth:`version`: a non-string token that changes is a change too.
        return self.payload(response), json_field(response, "sequence_token")

    def preflights(self, created: Created) -> list[Preflight]:
        return [
            Preflight(created.create_url, "POST", ("Content-Type", "Authorization")),
            Preflight(self.write_url(created), "PUT", ("Content-Type",)),
            Preflight(created.url, "GET"),
            Preflight(created.url, "DELETE"),
        ]

    # -- lifetime: expires_in_ms, counting down from creation ------------------------------------------

    def lifetime_s(self, created: Created) -> float | None:
        return self._initial_ms(created) / 1000

    @staticmethod
    def _initial_ms(created: Created) -> int:
        value = json_field(created.answer, "expires_in_ms")
        return value if isinstance(value, int) else 0  # create() accepted only an integer

    def lifetime_unreadable(self) -> str:
        return 'The create answer has no integer "expires_in_ms".'

    def lifetime_over(self, created: Created) -> str:
        return f"The new session reports expires_in_ms = {self._initial_ms(created)}: it is already over."

    def lifetime_drift(self, created: Created, reads: list[httpx.Response]) -> str | None:
        # Each later reading may be at most the initial lifetime minus the time since creation (plus slack):
        # more means writes extend sessions or instances disagree about them.
        initial = self._initial_ms(created)
        for response in reads:
            value = json_field(response, "expires_in_ms") if response.status_code == 200 else None
            if not isinstance(value, int):
                continue
            elapsed_ms = (time.monotonic() - created.created_at) * 1000
            if value > initial + _TTL_SLACK_MS or value < initial - elapsed_ms - _TTL_SLACK_MS:
                return (
                    f"expires_in_ms went from {initial} at creation to {value} {elapsed_ms / 1000:.1f} s later; "
                    "it should count down from creation (writes do not extend sessions). The instances behind "
                    "this address disagree, or their clocks do."
                )
        return None

    def lifetime_out_of_bounds(self, seconds: float) -> str:
        return (
            f"Sessions live {seconds:.0f} s; MSC4388 asks for between {_GEN2_MIN_TTL_MS // 1000} and "
            f"{_GEN2_MAX_TTL_MS // 1000} s."
        )

    def lifetime_fine(self, seconds: float) -> str:
        return f"Sessions live {seconds:.0f} s and count down consistently."


def _create_answer_problem(body: dict[str, Any]) -> str | None:
    """What makes a create answer's JSON body unusable to clients, if anything."""
    if not {"id", "sequence_token", "expires_in_ms"} <= body.keys():
        return 'The answer lacks "id", "sequence_token" or "expires_in_ms".'
    session_id, token, expires_in_ms = body["id"], body["sequence_token"], body["expires_in_ms"]
    if not (isinstance(session_id, str) and is_opaque_id(session_id) and isinstance(token, str)):
        return (
            "The session id or sequence_token is not an opaque identifier (at most 255 characters of "
            "[A-Za-z0-9._~-]); it cannot be carried in a QR code."
        )
    if not isinstance(expires_in_ms, int) or isinstance(expires_in_ms, bool):
        return '"expires_in_ms" is not an integer.'
    return None
