"""Dispatch by the route table (:mod:`rendezvous.routes`): which handler answers a request, or 404 / 405.

The table is compiled once per app into plain dictionaries and tuples of bound handlers and metrics, so the hot
path (a poll every second from each device) costs a prefix test, a path split, one dictionary lookup and the
handler call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote

from .http import COMMON_HEADERS, PREFLIGHT_HEADERS, TEXT_PLAIN, MatrixError, Request, Response, Scope
from .metrics import RouteMetrics
from .protocol import M_UNRECOGNIZED
from .routes import PREFLIGHT, Mount, Operation, Resource
from .store import Generation

#: A route handler: ``handler(request, *path_params)``.
Handler = Callable[..., Awaitable[Response]]
_Entry = tuple[RouteMetrics, Handler]


def unrecognized() -> MatrixError:
    """404 ``M_UNRECOGNIZED``: no resource at this path."""
    return MatrixError(404, M_UNRECOGNIZED, "Unrecognized request")


async def preflight(request: Request, *_params: str) -> Response:
    """The answer to a CORS preflight, the same on every rendezvous resource."""
    return Response(204, [(b"content-type", TEXT_PLAIN), *COMMON_HEADERS, *PREFLIGHT_HEADERS])


class _CompiledResource:
    __slots__ = ("allow", "methods", "refused_route")

    def __init__(self, methods: dict[str, _Entry], allow: bytes, refused_route: RouteMetrics) -> None:
        self.methods = methods
        self.allow = allow
        self.refused_route = refused_route


class _CompiledMount:
    __slots__ = ("mount", "prefix", "raw_prefix", "resources")

    def __init__(self, mount: Mount, resources: tuple[_CompiledResource | None, ...]) -> None:
        self.mount = mount
        self.prefix = mount.prefix
        self.raw_prefix = mount.prefix.encode()
        #: Indexed by the number of path parameters.
        self.resources = resources


def _segments(scope: Scope, mount: _CompiledMount) -> list[str]:
    """The path segments after the mount's prefix, each percent-decoded on its own.

    Splitting the raw path first keeps an encoded ``%2F`` inside an id from turning into a separator.
    """
    raw: bytes | None = scope.get("raw_path")
    raw_prefix = mount.raw_prefix
    if raw is not None and raw.startswith(raw_prefix):
        rest = raw[len(raw_prefix) :].decode("latin-1")
        # Invalid UTF-8 escapes become U+FFFD, which no id or txnId may contain: refused later, not here.
        return [unquote(part, errors="replace") for part in rest.split("/")[1:]]
    path: str = scope["path"]
    return path[len(mount.prefix) :].split("/")[1:]


class Router:
    """The mounted part of the route table, with every operation bound to its handler and metrics."""

    def __init__(
        self,
        mounts: tuple[Mount, ...],
        api_of: Callable[[Mount], object],
        routes: Mapping[str, RouteMetrics],
    ) -> None:
        """Bind each operation of ``mounts`` to the method of ``api_of(mount)`` it names, and to ``routes``."""
        self._mounts = tuple(self._compile(mount, api_of(mount), routes) for mount in mounts)

    @staticmethod
    def _compile(mount: Mount, api: object, routes: Mapping[str, RouteMetrics]) -> _CompiledMount:
        by_params: dict[int, _CompiledResource] = {}
        for resource in mount.resources:
            # Resources are told apart by their parameter count alone.
            count = len(resource.params)
            if count in by_params:
                raise ValueError(f"two resources with {count} path parameters under {mount.prefix}")
            by_params[count] = _compile_resource(resource, api, routes)
        size = max(by_params) + 1
        return _CompiledMount(mount, tuple(by_params.get(count) for count in range(size)))

    def _mount_of(self, path: str) -> _CompiledMount | None:
        """The mount whose prefix ``path`` is at or under."""
        for mount in self._mounts:
            prefix = mount.prefix
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return mount
        return None

    async def dispatch(self, request: Request) -> Response:
        """Set ``request.route`` and answer with the matching handler; 404 / 405 :class:`MatrixError` if none."""
        scope = request.scope
        mount = self._mount_of(scope["path"])
        if mount is not None:
            params = _segments(scope, mount)
            count = len(params)
            resources = mount.resources
            # An empty segment (``…/rendezvous/``, ``…//x``) is no parameter: nothing there.
            if count < len(resources) and all(params):
                resource = resources[count]
                if resource is not None:
                    entry = resource.methods.get(request.method)
                    if entry is None:
                        request.route = resource.refused_route
                        raise MatrixError(
                            405, M_UNRECOGNIZED, "Method not allowed", headers=[(b"allow", resource.allow)]
                        )
                    request.route, handler = entry
                    # Spelled out for the common counts: a call with *params would copy them into a new tuple.
                    if count == 1:
                        return await handler(request, params[0])
                    if count == 0:
                        return await handler(request)
                    return await handler(request, *params)
        raise unrecognized()

    def watch(self, scope: Scope) -> tuple[Generation, str] | None:
        """The generation and session id of a WebSocket watch path (``<session path>/watch``), else ``None``."""
        mount = self._mount_of(scope["path"])
        generation = mount.mount.generation if mount is not None and mount.mount.watch else None
        if mount is None or generation is None:
            return None
        segments = _segments(scope, mount)
        if len(segments) == 2 and segments[0] and segments[1] == "watch":
            return generation, segments[0]
        return None


def _compile_resource(resource: Resource, api: object, routes: Mapping[str, RouteMetrics]) -> _CompiledResource:
    methods: dict[str, _Entry] = {}
    for operation in resource.operations:
        entry = (routes[operation.route], _handler(operation, api))
        for method in operation.methods:
            methods[method] = entry
    return _CompiledResource(methods, resource.allow.encode(), routes[resource.refused_route])


def _handler(operation: Operation, api: object) -> Handler:
    if operation is PREFLIGHT:
        return preflight
    handler: Handler = getattr(api, operation.handler)
    return handler
