"""Reading one HTTP answer: its Matrix error, media type and JSON body, and how to name it in a message."""

from __future__ import annotations

from typing import Any

import httpx


def matrix_error(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON error body, if the answer is a Matrix error with ``application/json``."""
    if media_type(response) != "application/json":
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("errcode"), str):
        return None
    return body


def errcode(response: httpx.Response) -> str | None:
    """The Matrix errcode of the answer, if it is a Matrix error."""
    error = matrix_error(response)
    return None if error is None else str(error["errcode"])


def media_type(response: httpx.Response) -> str | None:
    """The ``Content-Type`` without its parameters, lower-cased."""
    value = response.headers.get("content-type")
    return None if value is None else value.split(";", 1)[0].strip().lower()


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object in the body, or an empty one if the body is not a JSON object."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def json_field(response: httpx.Response, key: str) -> Any:
    """One member of the JSON object in the body (``None`` if absent)."""
    return json_object(response).get(key)


def status_text(response: httpx.Response) -> str:
    """The status code, with the errcode when the answer is a Matrix error."""
    error = matrix_error(response)
    if error is not None:
        return f"{response.status_code} {error['errcode']}"
    return str(response.status_code)


def lost(response: httpx.Response) -> str:
    """A hint for a 404 about the session this run has just created (and not deleted)."""
    if response.status_code != 404:
        return ""
    return (
        " The session was created moments ago, so this request reached an instance that does not know it "
        "(see the consistency check)."
    )


def join(problems: list[str]) -> str:
    """Problems as one sentence."""
    return "; ".join(problems) + "."


def create_failure_hint(response: httpx.Response) -> str:
    """The likely cause of a failed session create, from its answer."""
    error = matrix_error(response)
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
