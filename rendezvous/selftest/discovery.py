"""Discovery: whether the server offers each generation to clients, as they find out before showing a QR code."""

from __future__ import annotations

from ..protocol import M_UNKNOWN_TOKEN, VERSIONS_PATH
from .answers import errcode, json_field, status_text
from .client import RequestFailed, where
from .context import Run
from .report import Status

GEN1_FEATURE = "org.matrix.msc4108"


async def check_gen1_discovery(run: Run) -> None:
    """``gen1.discovery``: Element offers QR login only when ``/versions`` lists MSC4108. Never fails the run."""
    name = "gen1.discovery"
    try:
        response = await run.http.send("GET", run.base + VERSIONS_PATH, headers=run.http.browser())
    except RequestFailed as exc:
        run.record(name, Status.WARN, f"{exc}; cannot tell whether clients are offered QR login.")
        return
    if response.status_code != 200:
        run.record(
            name,
            Status.WARN,
            f"GET {VERSIONS_PATH} answered {status_text(response)}: this URL is not a homeserver (fine when "
            "testing the rendezvous server directly), but Element only offers QR login when the homeserver "
            f"lists {GEN1_FEATURE} there.",
        )
        return
    features = json_field(response, "unstable_features") or {}
    if isinstance(features, dict) and features.get(GEN1_FEATURE) is True:
        run.record(name, Status.PASS, f"{VERSIONS_PATH} advertises {GEN1_FEATURE}.")
    else:
        run.record(
            name,
            Status.WARN,
            f"{VERSIONS_PATH} does not list {GEN1_FEATURE} in unstable_features, so Element's clients will "
            "not offer sign-in with QR. With Synapse set experimental_features.msc4108_enabled or "
            "msc4108_delegation_endpoint (both need the matrix_authentication_service block).",
        )


async def check_gen2_discovery(run: Run, prefix: str) -> bool:
    """``gen2.discovery``: whether this requester may create sessions under ``prefix``."""
    name = "gen2.discovery"
    response = await run.http.send("GET", prefix, headers=run.http.browser(run.http.auth()))
    if response.status_code != 200:
        hint = (
            "the Gen-2 API is switched off or not routed to the rendezvous server (with this server: "
            "gen2_create_policy; with Synapse: msc4388_mode). Pass --skip-gen2 if that is intended"
            if response.status_code in (404, 405)
            else "an access token the homeserver refuses"
            if errcode(response) == M_UNKNOWN_TOKEN
            else "see the server's log"
        )
        run.record(name, Status.FAIL, f"GET {where(prefix)} answered {status_text(response)}: {hint}.")
        return False
    available = json_field(response, "create_available")
    if not isinstance(available, bool):
        run.record(
            name,
            Status.FAIL,
            f'GET {where(prefix)} did not answer {{"create_available": true|false}}; something other than '
            "a rendezvous server answers this path.",
        )
        return False
    if not available:
        run.record(
            name,
            Status.WARN,
            "Discovery says this requester may not create sessions (policy 'authenticated'); pass "
            "--access-token to test session creation as a logged-in device.",
        )
        return False
    run.record(name, Status.PASS, "Discovery answers create_available: true.")
    return True
