"""The OpenAPI 3.1 description of the routes this server mounts, served at :data:`rendezvous.protocol.OPENAPI_PATH`.

It is built from the same settings that decide which prefixes the router mounts, so a disabled API is absent
here too; ``tests/server`` checks every described operation against the running server.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .config import CreatePolicy, Settings
from .protocol import (
    GEN1_PATH,
    GEN2_STABLE_CONCURRENT_WRITE,
    GEN2_STABLE_PATH,
    GEN2_UNSTABLE_CONCURRENT_WRITE,
    GEN2_UNSTABLE_PATH,
    HEALTH_PATH,
    OPENAPI_PATH,
)

_ERROR = {"$ref": "#/components/schemas/MatrixError"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties}


_STRING: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_SESSION_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_TXN_ID = {"name": "txnId", "in": "path", "required": True, "schema": {"type": "string"}}
_RATE = _error("M_LIMIT_EXCEEDED: rate limited; retry_after_ms and Retry-After say when to retry")
_UNAVAILABLE = _error("M_UNKNOWN: the session store is unavailable; Retry-After says when to retry")
_NOT_FOUND = _error(
    "M_NOT_FOUND: no such session (never created, deleted, expired, or of the other generation)"
)


def _gen1_paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    session_headers = {
        name: {"schema": {"type": "string"}} for name in ("ETag", "Expires", "Last-Modified", "Cache-Control")
    }
    return {
        GEN1_PATH: {
            "post": {
                "operationId": "gen1Create",
                "tags": ["Gen-1 (MSC4108)"],
                "summary": "Create a session; the body is its first payload (usually empty)",
                "requestBody": {"required": False, "content": text},
                "responses": {
                    "201": {**_json("Created", _obj(url=_STRING)), "headers": session_headers},
                    "400": _error(
                        "M_MISSING_PARAM / M_INVALID_PARAM: Content-Type missing or not text/plain"
                    ),
                    "413": _error("M_TOO_LARGE"),
                    "429": _RATE,
                    "503": _UNAVAILABLE,
                },
            }
        },
        GEN1_PATH + "/{id}": {
            "parameters": [_SESSION_ID],
            "get": {
                "operationId": "gen1Receive",
                "tags": ["Gen-1 (MSC4108)"],
                "summary": "Read the payload",
                "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The payload", "content": text, "headers": session_headers},
                    "304": {
                        "description": "Unchanged since the ETag in If-None-Match",
                        "headers": session_headers,
                    },
                    "404": _NOT_FOUND,
                    "429": _RATE,
                    "503": _UNAVAILABLE,
                },
            },
            "put": {
                "operationId": "gen1Send",
                "tags": ["Gen-1 (MSC4108)"],
                "summary": "Replace the payload if If-Match names the current ETag",
                "parameters": [{"name": "If-Match", "in": "header", "required": True, "schema": _STRING}],
                "requestBody": {"required": True, "content": text},
                "responses": {
                    "202": {
                        "description": "Stored; the new ETag is in the headers",
                        "headers": session_headers,
                    },
                    "400": _error(
                        "M_MISSING_PARAM / M_INVALID_PARAM: If-Match or Content-Type missing/malformed"
                    ),
                    "404": _NOT_FOUND,
                    "412": _error(
                        "M_UNKNOWN + org.matrix.msc4108.errcode M_CONCURRENT_WRITE: ETag not current"
                    ),
                    "413": _error("M_TOO_LARGE"),
                    "429": _RATE,
                    "503": _UNAVAILABLE,
                },
            },
            "delete": {
                "operationId": "gen1Cancel",
                "tags": ["Gen-1 (MSC4108)"],
                "summary": "Delete the session",
                "responses": {"204": {"description": "Deleted"}, "404": _NOT_FOUND, "429": _RATE},
            },
        },
    }


def _gen2_paths(prefix: str, concurrent_errcode: str, tag: str, op_prefix: str) -> dict[str, Any]:
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
        prefix: {
            "get": {
                "operationId": f"{op_prefix}Discover",
                "tags": [tag],
                "summary": "Whether this requester may create sessions",
                "responses": {
                    "200": _json("Availability", _obj(create_available={"type": "boolean"})),
                    "401": _error("M_UNKNOWN_TOKEN: the access token sent is not valid"),
                    "429": _RATE,
                    "503": _error("M_UNKNOWN: the homeserver could not check the access token"),
                },
            },
            "post": {
                "operationId": f"{op_prefix}Create",
                "tags": [tag],
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
        },
        prefix + "/{id}": {
            "parameters": [_SESSION_ID],
            "get": {
                "operationId": f"{op_prefix}Receive",
                "tags": [tag],
                "summary": "Read the payload",
                "responses": {
                    "200": _json(
                        "The payload", _obj(data=_STRING, sequence_token=_STRING, expires_in_ms=_INT)
                    ),
                    "403": _error("M_FORBIDDEN: a browser navigation (Sec-Fetch-*)"),
                    "404": _NOT_FOUND,
                    "429": _RATE,
                    "503": _UNAVAILABLE,
                },
            },
            "put": {
                "operationId": f"{op_prefix}SendLegacy",
                "tags": [tag],
                "summary": "Replace the payload (no txnId; Synapse's idempotent-retry rule applies)",
                "requestBody": send_in,
                "responses": send_responses,
            },
            "delete": {
                "operationId": f"{op_prefix}Cancel",
                "tags": [tag],
                "summary": "Delete the session",
                "responses": {"200": _json("Deleted", {"type": "object"}), "404": _NOT_FOUND, "429": _RATE},
            },
        },
        prefix + "/{id}/{txnId}": {
            "parameters": [_SESSION_ID, _TXN_ID],
            "put": {
                "operationId": f"{op_prefix}Send",
                "tags": [tag],
                "summary": "Replace the payload; a repeated txnId gets the recorded answer",
                "requestBody": send_in,
                "responses": send_responses,
            },
        },
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for the routes ``settings`` enable."""
    paths: dict[str, Any] = {}
    if settings.gen1_enabled:
        paths.update(_gen1_paths())
    if settings.gen2_create_policy is not CreatePolicy.OFF:
        paths.update(_gen2_paths(GEN2_UNSTABLE_PATH, GEN2_UNSTABLE_CONCURRENT_WRITE, "Gen-2 (MSC4388)", "gen2"))
        if settings.gen2_stable_api:
            paths.update(_gen2_paths(GEN2_STABLE_PATH, GEN2_STABLE_CONCURRENT_WRITE, "Gen-2 stable", "gen2Stable"))
    paths[HEALTH_PATH] = {
        "get": {
            "operationId": "health",
            "tags": ["Operations"],
            "summary": "Liveness and store reachability, for load balancers",
            "responses": {"200": _json("Healthy", _obj(status=_STRING)), "503": _UNAVAILABLE},
        }
    }
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "tags": ["Operations"],
            "summary": "This document",
            "responses": {"200": _json("OpenAPI document", {"type": "object"})},
        }
    }
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
                        "org.matrix.msc4108.errcode": _STRING,
                    },
                }
            }
        },
    }
