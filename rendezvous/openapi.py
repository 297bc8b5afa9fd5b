"""The OpenAPI 3.1 description of the routes this server mounts, served at ``/_rendezvous/openapi.json``.

Its paths, methods, tags and operation ids come from the route table (:mod:`rendezvous.routes`) for the same
settings the router mounts, so a disabled API is absent here too; this module adds what each operation takes
and answers. ``tests/server`` checks every described operation against the running server.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .config import Settings
from .protocol import GEN2_STABLE_CONCURRENT_WRITE, GEN2_UNSTABLE_CONCURRENT_WRITE, MSC4108_ERRCODE_FIELD
from .routes import Mount, Resource, mounted
from .store import Generation

_ERROR = {"$ref": "#/components/schemas/MatrixError"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties}


_STRING: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_RATE = _error("M_LIMIT_EXCEEDED: rate limited; retry_after_ms and Retry-After say when to retry")
_UNAVAILABLE = _error("M_UNKNOWN: the session store is unavailable; Retry-After says when to retry")
_NOT_FOUND = _error("M_NOT_FOUND: no such session (never created, deleted, expired, or of the other generation)")


def _gen1_operations() -> dict[str, dict[str, Any]]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    session_headers = {
        name: {"schema": {"type": "string"}} for name in ("ETag", "Expires", "Last-Modified", "Cache-Control")
    }
    return {
        "Create": {
            "summary": "Create a session; the body is its first payload (usually empty)",
            "requestBody": {"required": False, "content": text},
            "responses": {
                "201": {**_json("Created", _obj(url=_STRING)), "headers": session_headers},
                "400": _error("M_MISSING_PARAM / M_INVALID_PARAM: Content-Type missing or not text/plain"),
                "413": _error("M_TOO_LARGE"),
                "429": _RATE,
                "503": _UNAVAILABLE,
            },
        },
        "Receive": {
            "summary": "Read the payload",
            "description": (
                "With If-None-Match naming exactly the current ETag (and no Prefer: wait), the answer may be held "
                "until the payload changes (200), the session ends (404) or hold_ms passes (304)."
            ),
            "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The payload", "content": text, "headers": session_headers},
                "304": {"description": "Unchanged since the ETag in If-None-Match", "headers": session_headers},
                "404": _NOT_FOUND,
                "429": _RATE,
                "503": _UNAVAILABLE,
            },
        },
        "Send": {
            "summary": "Replace the payload if If-Match names the current ETag",
            "parameters": [{"name": "If-Match", "in": "header", "required": True, "schema": _STRING}],
            "requestBody": {"required": True, "content": text},
            "responses": {
                "202": {"description": "Stored; the new ETag is in the headers", "headers": session_headers},
                "400": _error("M_MISSING_PARAM / M_INVALID_PARAM: If-Match or Content-Type missing/malformed"),
                "404": _NOT_FOUND,
                "412": _error(f"M_UNKNOWN + {MSC4108_ERRCODE_FIELD} M_CONCURRENT_WRITE: ETag not current"),
                "413": _error("M_TOO_LARGE"),
                "429": _RATE,
                "503": _UNAVAILABLE,
            },
        },
        "Cancel": {
            "summary": "Delete the session",
            "responses": {"204": {"description": "Deleted"}, "404": _NOT_FOUND, "429": _RATE},
        },
    }


def _gen2_operations(concurrent_errcode: str) -> dict[str, dict[str, Any]]:
    data_in = {"required": True, "content": {"application/json": {"schema": _obj(data=_STRING)}}}
    send_in = {
        "required": True,
        "content": {"application/json": {"schema": _obj(data=_STRING, sequence_token=_STRING)}},
    }
    bad = _error("M_NOT_JSON / M_MISSING_PARAM / M_INVALID_PARAM: malformed body")
    send_responses = {
        "200": _json("Stored (or the recorded answer to this txnId)", _obj(sequence_token=_STRING)),
        "400": bad,
        "404": _NOT_FOUND,
        "409": _error(f"{concurrent_errcode}: sequence_token is not current"),
        "413": _error("M_TOO_LARGE: data over the limit (UTF-8 bytes)"),
        "429": _RATE,
        "503": _UNAVAILABLE,
    }
    return {
        "Discover": {
            "summary": "Whether this requester may create sessions",
            "responses": {
                "200": _json("Availability", _obj(create_available={"type": "boolean"})),
                "401": _error("M_UNKNOWN_TOKEN: the access token sent is not valid"),
                "429": _RATE,
                "503": _error("M_UNKNOWN: the homeserver could not check the access token"),
            },
        },
        "Create": {
            "summary": "Create a session",
            "requestBody": data_in,
            "responses": {
                "200": _json("Created", _obj(id=_STRING, sequence_token=_STRING, expires_in_ms=_INT)),
                "400": bad,
                "401": _error("M_UNKNOWN_TOKEN: the access token sent is not valid"),
                "403": _error("M_FORBIDDEN: this requester may not create sessions"),
                "413": _error("M_TOO_LARGE: data over the limit (UTF-8 bytes)"),
                "429": _RATE,
                "503": _UNAVAILABLE,
            },
        },
        "Receive": {
            "summary": "Read the payload",
            "responses": {
                "200": _json("The payload", _obj(data=_STRING, sequence_token=_STRING, expires_in_ms=_INT)),
                "403": _error("M_FORBIDDEN: a browser navigation (Sec-Fetch-*)"),
                "404": _NOT_FOUND,
                "429": _RATE,
                "503": _UNAVAILABLE,
            },
        },
        "SendLegacy": {
            "summary": "Replace the payload (no txnId; Synapse's idempotent-retry rule applies)",
            "requestBody": send_in,
            "responses": send_responses,
        },
        "Cancel": {
            "summary": "Delete the session",
            "responses": {"200": _json("Deleted", {"type": "object"}), "404": _NOT_FOUND, "429": _RATE},
        },
        "Send": {
            "summary": "Replace the payload; a repeated txnId gets the recorded answer",
            "requestBody": send_in,
            "responses": send_responses,
        },
    }


def _server_operations() -> dict[str, dict[str, Any]]:
    return {
        "health": {
            "summary": "Liveness and store reachability, for load balancers",
            "responses": {"200": _json("Healthy", _obj(status=_STRING)), "503": _UNAVAILABLE},
        },
        "openapi": {
            "summary": "This document",
            "responses": {"200": _json("OpenAPI document", {"type": "object"})},
        },
    }


def _operations(mount: Mount) -> dict[str, dict[str, Any]]:
    """What each documented operation of ``mount`` takes and answers, by operation id (without the prefix)."""
    if mount.generation is Generation.GEN1:
        return _gen1_operations()
    if mount.generation is Generation.GEN2:
        return _gen2_operations(GEN2_STABLE_CONCURRENT_WRITE if mount.stable else GEN2_UNSTABLE_CONCURRENT_WRITE)
    return _server_operations()


def _path_item(mount: Mount, resource: Resource, operations: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The path item of ``resource``: its path parameters and documented operations; ``None`` if it has none."""
    if all(operation.operation_id is None for operation in resource.operations):
        return None
    item: dict[str, Any] = {}
    if resource.params:
        item["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in resource.params
        ]
    for operation in resource.operations:
        if operation.operation_id is not None:
            item[operation.methods[0].lower()] = {
                "operationId": mount.operation_prefix + operation.operation_id,
                "tags": [mount.tag],
                **operations[operation.operation_id],
            }
    return item


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for the routes ``settings`` enable."""
    paths: dict[str, Any] = {}
    for mount in mounted(settings):
        operations = _operations(mount)
        for resource in mount.resources:
            item = _path_item(mount, resource, operations)
            if item is not None:
                paths[mount.prefix + resource.template] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "qrlink rendezvous server", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "MatrixError": {
                    "type": "object",
                    "required": ["errcode", "error"],
                    "properties": {
                        "errcode": _STRING,
                        "error": _STRING,
                        "retry_after_ms": _INT,
                        MSC4108_ERRCODE_FIELD: _STRING,
                    },
                }
            }
        },
    }
