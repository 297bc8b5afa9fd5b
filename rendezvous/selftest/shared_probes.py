"""The checks both generations share, written once against a :class:`~.adapter.GenerationAdapter`.

Each records ``<generation>.<check>``: ``cors_preflight``, ``cors_headers``, ``consistency``, ``ttl``, ``delete``.
"""

from __future__ import annotations

import httpx

from .adapter import Created, GenerationAdapter
from .answers import join, lost, status_text
from .client import FETCH_METADATA, where
from .context import Run
from .report import Status
from .verdicts import describe_cors_problems, describe_preflight_problems

#: The shared checks' names, in the order a generation runs them (after its own).
SHARED_CHECKS = ("cors_preflight", "cors_headers", "consistency", "ttl", "delete")


async def check_cors_preflight(run: Run, gen: GenerationAdapter, created: Created) -> None:
    """Every cross-origin request of a login passes its preflight."""
    name = f"{gen.name}.cors_preflight"
    origin = run.options.origin
    for preflight in gen.preflights(created):
        headers = {"Origin": origin, "Access-Control-Request-Method": preflight.method}
        if preflight.request_headers:
            headers["Access-Control-Request-Headers"] = ", ".join(h.lower() for h in preflight.request_headers)
        response = await run.http.send("OPTIONS", preflight.url, headers={**headers, **FETCH_METADATA})
        problems = describe_preflight_problems(response, origin, preflight.method, preflight.request_headers)
        if problems:
            run.record(
                name,
                Status.FAIL,
                f"The preflight for {preflight.method} {where(preflight.url)}: {join(problems)} Browsers then "
                "refuse the request. Let OPTIONS through to the rendezvous server (or answer it with the same "
                "headers).",
            )
            return
    run.record(name, Status.PASS, "CORS preflights allow every method and header the clients send.")


def check_cors_headers(run: Run, gen: GenerationAdapter, answers: list[tuple[str, httpx.Response]]) -> None:
    """Every answer lets a browser at the origin read it (and, for Gen-1, read its ETag)."""
    name = f"{gen.name}.cors_headers"
    expose = gen.exposes_version_header
    for label, response in answers:
        problems = describe_cors_problems(response, run.options.origin, expose_etag=expose)
        if problems:
            run.record(
                name,
                Status.FAIL,
                f"On the {label} answer: {join(problems)} Let the proxy pass the server's CORS headers "
                "through (and not add its own).",
            )
            return
    exposed = f" and Expose-Headers: {gen.version_name}" if expose else ""
    run.record(name, Status.PASS, f"Access-Control-Allow-Origin{exposed} arrived on every answer.")


async def check_consistency(
    run: Run, gen: GenerationAdapter, created: Created, first: httpx.Response
) -> list[httpx.Response]:
    """GET the session ``repeat`` times on fresh connections; all must see what ``first`` saw. The reads."""
    name = f"{gen.name}.consistency"
    reads = await repeat_reads(run, created.url)
    total = len(reads)
    expected = gen.state(first)
    missing = sum(r.status_code == 404 for r in reads)
    other = [r for r in reads if r.status_code not in (200, 404)]
    differing = [r for r in reads if r.status_code == 200 and gen.state(r) != expected]
    if missing:
        run.record(name, Status.FAIL, split_message(missing, total))
    elif other:
        run.record(name, Status.FAIL, f"{len(other)} of {total} GETs answered {status_text(other[0])}.")
    elif differing:
        run.record(
            name,
            Status.FAIL,
            f"{len(differing)} of {total} GETs saw a different {gen.state_words}: the instances behind this "
            "address do not share one store, or a cache serves stale answers.",
        )
    else:
        run.record(
            name, Status.PASS, f"{total} GETs on fresh connections all saw the session and its {gen.version_name}."
        )
    return reads


async def repeat_reads(run: Run, url: str) -> list[httpx.Response]:
    """``repeat`` GETs as a native client (no Origin), each on a new connection, as load balancers see them."""
    return [await run.http.send("GET", url, headers={"Connection": "close"}) for _ in range(run.options.repeat)]


def split_message(missing: int, total: int) -> str:
    """What a live session missing from some reads means: instances that do not share sessions."""
    return (
        f"{missing} of {total} GETs on fresh connections answered 404 for a live session: the address "
        "load-balances between instances that do not share sessions. Run one instance, or point every "
        "instance and worker at the same Redis (store_url = redis://…); sticky sessions do not help, the two "
        "devices of a login are different clients."
    )


def check_ttl(run: Run, gen: GenerationAdapter, created: Created, reads: list[httpx.Response]) -> None:
    """The lifetime is positive, fixed at creation, agreed on by every read, and long enough to log in."""
    name = f"{gen.name}.ttl"
    lifetime = gen.lifetime_s(created)
    low, high = gen.lifetime_bounds_s
    if lifetime is None:
        run.record(name, Status.FAIL, gen.lifetime_unreadable())
    elif lifetime <= 0:
        run.record(name, Status.FAIL, gen.lifetime_over(created))
    elif (drift := gen.lifetime_drift(created, reads)) is not None:
        run.record(name, gen.drift_status, drift)
    elif (skew := gen.clock_problem(created)) is not None:
        run.record(name, Status.WARN, skew)
    elif not low <= lifetime <= high:
        run.record(name, Status.WARN, gen.lifetime_out_of_bounds(lifetime))
    else:
        run.record(name, Status.PASS, gen.lifetime_fine(lifetime))


async def check_delete(run: Run, gen: GenerationAdapter, created: Created) -> None:
    """DELETE ends the session: it answers success, and the session is gone afterwards."""
    name = f"{gen.name}.delete"
    response = await gen.delete(created.url)
    if response.status_code not in gen.delete_statuses:
        run.record(
            name,
            Status.FAIL,
            f"DELETE answered {status_text(response)}, expected {gen.delete_status}.{lost(response)}",
        )
        return
    run.cleanups.deleted(created.url)
    after = await gen.read(created.url)
    if not gen.is_gone(after):
        run.record(
            name,
            Status.FAIL,
            f"After DELETE the session still answers {status_text(after)}; expected {gen.gone_text} (clients "
            "treat 404 as cancelled).",
        )
        return
    run.record(
        name,
        Status.PASS,
        f"DELETE answered {gen.delete_status}, and the session is gone ({gen.gone_text}) afterwards.",
    )
