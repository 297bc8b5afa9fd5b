"""``rendezvous selftest``: check a deployed rendezvous end to end, the way browsers and Element's clients use it.

Everything between a client and the server (TLS terminators, CDNs, load balancers, WAFs) can break QR login in
ways no server-side test sees: a compressing proxy weakens the Gen-1 ``ETag`` so every PUT gets 412, a charset
appended to ``Content-Type`` makes js-sdk poll forever, a stripped ``Access-Control-Expose-Headers`` hides the
ETag from Element Web, two memory-store instances behind one address lose half the requests. This package runs
the whole Gen-1 and Gen-2 exchange through the public URL and reports each of those properties as one named
check with a plain-English verdict, the likely cause and the fix.

Each check has a stable ``name`` (``gen1.etag_strong``, ``gen2.consistency``, …) and a :class:`Status`. Any
``fail`` makes the run fail; ``warn`` marks what works today but is fragile or off-spec. Every session the
run creates is deleted before it returns, whatever happened.

The package is an HTTP client and loads nothing of the server: it takes the protocol's paths and errcodes from
:mod:`rendezvous.protocol`. Its modules, one concept each:

- :mod:`.options`, :mod:`.report`, :mod:`.output`: what to check; the verdicts; how they are printed.
- :mod:`.client`, :mod:`.cleanup`, :mod:`.context`: requests as Element sends them; the sessions to delete;
  what every probe of a run shares.
- :mod:`.answers`, :mod:`.verdicts`: reading one answer; pure verdicts on its headers.
- :mod:`.discovery`: whether the server offers each generation.
- :mod:`.adapter`, :mod:`.gen1`, :mod:`.gen2`: how each generation creates, reads, writes and deletes a session
  and shows its version.
- :mod:`.shared_probes`, :mod:`.gen1_probes`, :mod:`.gen2_probes`: the checks both generations share (written
  once against the adapter), and each generation's own.
- :mod:`.runner`: a whole run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import normalise_base_url
    from .options import DEFAULT_HOLD_WAIT_S, DEFAULT_ORIGIN, DEFAULT_REPEAT, DEFAULT_TIMEOUT_S, SelfTestOptions
    from .output import format_result, format_summary, report_json
    from .report import CheckResult, SelfTestReport, Status
    from .runner import run_selftest
    from .verdicts import (
        describe_cors_problems,
        describe_etag_problem,
        describe_preflight_problems,
        header_tokens,
        http_date_seconds,
    )

#: Where each name of :data:`__all__` is defined. They are loaded on first use, so that ``rendezvous serve``,
#: which reads only the option defaults for its ``--help``, never loads the HTTP client.
_LAZY: dict[str, str] = {
    "normalise_base_url": "client",
    **dict.fromkeys(
        ("DEFAULT_HOLD_WAIT_S", "DEFAULT_ORIGIN", "DEFAULT_REPEAT", "DEFAULT_TIMEOUT_S", "SelfTestOptions"), "options"
    ),
    **dict.fromkeys(("format_result", "format_summary", "report_json"), "output"),
    **dict.fromkeys(("CheckResult", "SelfTestReport", "Status"), "report"),
    "run_selftest": "runner",
    **dict.fromkeys(
        (
            "describe_cors_problems",
            "describe_etag_problem",
            "describe_preflight_problems",
            "header_tokens",
            "http_date_seconds",
        ),
        "verdicts",
    ),
}

__all__ = [
    "DEFAULT_HOLD_WAIT_S",
    "DEFAULT_ORIGIN",
    "DEFAULT_REPEAT",
    "DEFAULT_TIMEOUT_S",
    "CheckResult",
    "SelfTestOptions",
    "SelfTestReport",
    "Status",
    "describe_cors_problems",
    "describe_etag_problem",
    "describe_preflight_problems",
    "format_result",
    "format_summary",
    "header_tokens",
    "http_date_seconds",
    "normalise_base_url",
    "report_json",
    "run_selftest",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value
