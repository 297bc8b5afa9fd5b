"""The route table: every path the server answers, with its methods, handlers, metrics routes and OpenAPI ids.

Everything that needs the route set reads it from here: the router (:mod:`rendezvous.router`) dispatches by it
and builds each ``Allow`` header from it, the metrics (:mod:`rendezvous.metrics`) bind one ``route`` label per
name in it, and the OpenAPI document (:mod:`rendezvous.openapi`) lists its documented operations. The module
only declares; it imports nothing that serves a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import CreatePolicy, Settings
from .protocol import (
    GEN1_PATH,
    GEN2_STABLE_PATH,
    GEN2_UNSTABLE_PATH,
    HEALTH_PATH,
    INDEX_PATH,
    METRICS_PATH,
    OPENAPI_PATH,
)
from .store import Generation

#: Methods in the order an ``Allow`` header lists them.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")

#: The routes a session GET switches to while it is held as a long-poll (push extension).
GEN1_LONG_POLL = "gen1.long_poll"
GEN2_LONG_POLL = "gen2.long_poll"
#: The route a Gen-1 poll switches to while it is held (no extension: a plain conditional GET, see docs/push.md).
GEN1_HOLD = "gen1.hold"
#: The route of a request that matched no resource, or a method a rendezvous resource does not answer.
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Operation:
    """What a resource does for some methods: who answers, and under which names it is counted and documented."""

    #: The methods it answers; the first one is the method the OpenAPI document lists.
    methods: tuple[str, ...]
    #: The method of the mount's API object that answers, called as ``handler(request, *path_params)``.
    handler: str
    #: The metrics ``route`` label.
    route: str
    #: The OpenAPI ``operationId`` after the mount's :attr:`Mount.operation_prefix`; ``None``: undocumented.
    operation_id: str | None = None
    #: The route the operation counts under instead while it is held as a long-poll.
    long_poll_route: str | None = None
    #: The route the operation counts under instead while a plain poll of it is held.
    hold_route: str | None = None


#: The CORS preflight, which the router answers itself on every rendezvous resource.
PREFLIGHT = Operation(("OPTIONS",), "preflight", "preflight")


@dataclass(frozen=True, slots=True)
class Resource:
    """One path shape under a mount and the operations on it."""

    #: The path after the mount's prefix: ``""`` or ``/{name}`` parameters, each one non-empty segment.
    template: str
    operations: tuple[Operation, ...]
    #: The route a method the resource does not answer (405) counts under.
    refused_route: str = OTHER

    @property
    def params(self) -> tuple[str, ...]:
        """The names of the path parameters, in order."""
        return tuple(part.strip("{}") for part in self.template.split("/")[1:])

    @property
    def allow(self) -> str:
        """The ``Allow`` header value: every method of the resource."""
        methods = {method for operation in self.operations for method in operation.methods}
        return ", ".join(method for method in _METHOD_ORDER if method in methods)


@dataclass(frozen=True, slots=True)
class Mount:
    """A prefix and the resources under it, served when :attr:`enabled` says so for the settings."""

    prefix: str
    resources: tuple[Resource, ...]
    enabled: Callable[[Settings], bool]
    #: The generation whose API object answers; ``None``: the app itself answers.
    generation: Generation | None = None
    #: The stable Gen-2 prefix, whose concurrent-write errcode differs.
    stable: bool = False
    #: Whether ``<prefix>/{id}/watch`` is the push extension's WebSocket watch.
    watch: bool = False
    #: The OpenAPI tag and the prefix of its ``operationId`` values.
    tag: str = "Operations"
    operation_prefix: str = ""


def _gen1_resources() -> tuple[Resource, ...]:
    return (
        Resource("", (Operation(("POST",), "create", "gen1.create", "Create"), PREFLIGHT)),
        Resource(
            "/{id}",
            (
                Operation(
                    ("GET", "HEAD"),
                    "get",
                    "gen1.get",
                    "Receive",
                    long_poll_route=GEN1_LONG_POLL,
                    hold_route=GEN1_HOLD,
                ),
                Operation(("PUT",), "put", "gen1.put", "Send"),
                Operation(("DELETE",), "delete", "gen1.delete", "Cancel"),
                PREFLIGHT,
            ),
        ),
    )


def _gen2_resources() -> tuple[Resource, ...]:
    # Both PUTs share a handler (its txnId is optional) and a route; only the document tells them apart.
    return (
        Resource(
            "",
            (
                Operation(("GET", "HEAD"), "discover", "gen2.discover", "Discover"),
                Operation(("POST",), "create", "gen2.create", "Create"),
                PREFLIGHT,
            ),
        ),
        Resource(
            "/{id}",
            (
                Operation(("GET", "HEAD"), "get", "gen2.get", "Receive", long_poll_route=GEN2_LONG_POLL),
                Operation(("PUT",), "put", "gen2.put", "SendLegacy"),
                Operation(("DELETE",), "delete", "gen2.delete", "Cancel"),
                PREFLIGHT,
            ),
        ),
        Resource("/{id}/{txnId}", (Operation(("PUT",), "put", "gen2.put", "Send"), PREFLIGHT)),
    )


def _server_resource(handler: str, route: str, operation_id: str | None) -> tuple[Resource, ...]:
    """A read-only path of the server itself; its 405s count under its own route."""
    return (Resource("", (Operation(("GET", "HEAD"), handler, route, operation_id),), refused_route=route),)


def _gen2_on(settings: Settings) -> bool:
    return settings.gen2_create_policy is not CreatePolicy.OFF


#: Every mount, in the order the OpenAPI document lists them.
MOUNTS: tuple[Mount, ...] = (
    Mount(
        GEN1_PATH,
        _gen1_resources(),
        lambda settings: settings.gen1_enabled,
        generation=Generation.GEN1,
        watch=True,
        tag="Gen-1 (MSC4108)",
        operation_prefix="gen1",
    ),
    Mount(
        GEN2_UNSTABLE_PATH,
        _gen2_resources(),
        _gen2_on,
        generation=Generation.GEN2,
        watch=True,
        tag="Gen-2 (MSC4388)",
        operation_prefix="gen2",
    ),
    Mount(
        GEN2_STABLE_PATH,
        _gen2_resources(),
        lambda settings: _gen2_on(settings) and settings.gen2_stable_api,
        generation=Generation.GEN2,
        stable=True,
        watch=True,
        tag="Gen-2 stable",
        operation_prefix="gen2Stable",
    ),
    Mount(HEALTH_PATH, _server_resource("serve_health", "health", "health"), lambda settings: True),
    Mount(OPENAPI_PATH, _server_resource("serve_openapi", "openapi", "openapi"), lambda settings: True),
    # Undocumented: a scrape target, not part of the API. With metrics_port it is served on that port instead.
    Mount(
        METRICS_PATH,
        _server_resource("serve_metrics", "metrics", None),
        lambda settings: settings.metrics_enabled and settings.metrics_port is None,
    ),
    # Undocumented: a page for people, not part of the API.
    Mount(INDEX_PATH, _server_resource("serve_index", "index", None), lambda settings: True),
)


def mounted(settings: Settings) -> tuple[Mount, ...]:
    """The mounts ``settings`` enable, in table order."""
    return tuple(mount for mount in MOUNTS if mount.enabled(settings))


def _route_names() -> tuple[str, ...]:
    names: dict[str, None] = {}
    for mount in MOUNTS:
        for resource in mount.resources:
            for operation in resource.operations:
                names[operation.route] = None
                if operation.long_poll_route is not None:
                    names[operation.long_poll_route] = None
                if operation.hold_route is not None:
                    names[operation.hold_route] = None
            names[resource.refused_route] = None
    names.pop(OTHER, None)
    names[OTHER] = None
    return tuple(names)


#: Every ``route`` label value: one per operation, not per URL (URLs carry session ids), ``other`` last.
ROUTE_NAMES: tuple[str, ...] = _route_names()
