"""A pytest plugin for mutation runs only (``make mutate`` loads it with ``-p``): the CLI test server in-process.

The server tests start the rendezvous server through its CLI in a subprocess (:func:`serve_cli`). mutmut
learns which tests reach which function by recording calls in the test process, and a subprocess records
nothing, so every server mutant would count as "no tests". This plugin replaces ``serve_cli`` before any test
module imports it: the same ``RENDEZVOUS_*`` settings, read by the same :func:`load_settings`, build the app,
which runs under uvicorn in a thread of the test process (:func:`serve_app`). Calls with CLI arguments still
get the real subprocess; none of the tests in the mutation selection pass any.

It also caps Hypothesis at a few examples per property test (the profile, and tests that set their own
``max_examples``): every mutant reruns the property tests that reach it, and at a few hundred examples some
take seconds each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hypothesis import settings

from rendezvous.app import create_app
from rendezvous.config import load_settings
from tests.support import server

_serve_cli = server.serve_cli


@contextlib.contextmanager
def serve_in_process(env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> Iterator[str]:
    if args:
        with _serve_cli(env, args) as base_url:
            yield base_url
        return
    app = create_app(load_settings(environ={"RENDEZVOUS_LOG_LEVEL": "warning", **(env or {})}))
    with server.serve_app(app) as base_url:
        yield base_url


server.serve_cli = serve_in_process

MAX_EXAMPLES = 25

settings.register_profile("mutation", max_examples=MAX_EXAMPLES, deadline=None)
settings.load_profile("mutation")


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # A test's own @settings are kept on the test function, where Hypothesis reads them when the test runs.
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(own, settings) and own.max_examples > MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(own, max_examples=MAX_EXAMPLES)
