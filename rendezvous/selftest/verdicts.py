"""Verdicts on single answers, from their headers alone: ETags, CORS, HTTP dates. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import parsedate_to_datetime

import httpx

COMPRESSION_FIX = (
    "a proxy or CDN is compressing the rendezvous responses; switch gzip/brotli/zstd off for the rendezvous "
    "paths (nginx: gzip off; Caddy: no encode directive; Traefik: no compress middleware; Cloudflare: a "
    "compression rule that disables it) and make sure the proxy honours Cache-Control: no-transform"
)


def describe_etag_problem(etag: str | None) -> str | None:
    """Why ``etag`` cannot work as a Gen-1 ETag, or ``None`` if it is a strong entity tag."""
    if etag is None:
        return (
            "no ETag header came back: a proxy, CDN or browser extension strips it (Cloudflare drops it from "
            "compressed or body-less answers); js-sdk then fails with etag_missing. Pass ETag through untouched"
        )
    if etag.startswith("W/"):
        return f"ETag came back weak ({etag[:3]}…): {COMPRESSION_FIX}; a weak ETag never satisfies If-Match"
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
