"""The rendezvous protocol's names: URL paths and Matrix errcodes, in one place.

The route handlers, the OpenAPI document, the self-test and the tests all read these. The module imports
nothing, so a client of the server (the self-test, a test) can use it without loading the server.
"""

from __future__ import annotations

# --- paths ----------------------------------------------------------------------------------------------------

#: Gen-1 (MSC4108, 2024 text): what every shipping Element client speaks.
GEN1_PATH = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
#: Gen-2 (MSC4388) under its unstable prefix.
GEN2_UNSTABLE_PATH = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
#: Gen-2 under the stable prefix (served only when enabled).
GEN2_STABLE_PATH = "/_matrix/client/v1/rendezvous"

HEALTH_PATH = "/health"
OPENAPI_PATH = "/_rendezvous/openapi.json"
METRICS_PATH = "/metrics"
#: A short text page naming the server, for whoever opens its address in a browser.
INDEX_PATH = "/"
#: The homeserver endpoint that the Gen-2 create policy ``authenticated`` asks about an access token.
WHOAMI_PATH = "/_matrix/client/v3/account/whoami"
#: The homeserver endpoint a client reads to learn which unstable features (and so which generations) exist.
VERSIONS_PATH = "/_matrix/client/versions"

# --- errcodes -------------------------------------------------------------------------------------------------

M_BAD_JSON = "M_BAD_JSON"
M_CONCURRENT_WRITE = "M_CONCURRENT_WRITE"
M_FORBIDDEN = "M_FORBIDDEN"
M_INVALID_PARAM = "M_INVALID_PARAM"
M_LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
M_MISSING_PARAM = "M_MISSING_PARAM"
M_NOT_FOUND = "M_NOT_FOUND"
M_NOT_JSON = "M_NOT_JSON"
M_TOO_LARGE = "M_TOO_LARGE"
M_UNKNOWN = "M_UNKNOWN"
M_UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"  # noqa: S105 (an errcode, not a secret)
M_UNRECOGNIZED = "M_UNRECOGNIZED"

#: Gen-1's 412 carries ``M_UNKNOWN`` as its errcode and the real one, ``M_CONCURRENT_WRITE``, in this field.
MSC4108_ERRCODE_FIELD = "org.matrix.msc4108.errcode"

#: Gen-2's concurrent-write errcode differs by prefix: the unstable one is namespaced.
GEN2_UNSTABLE_CONCURRENT_WRITE = "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
GEN2_STABLE_CONCURRENT_WRITE = M_CONCURRENT_WRITE

# --- identifiers ----------------------------------------------------------------------------------------------

#: Characters allowed by the Matrix "opaque identifier" grammar (RFC 3986 unreserved).
OPAQUE_ID_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: Opaque identifiers are at most 255 bytes: the Gen-2 QR code and AAD carry them behind a one-byte length.
OPAQUE_ID_MAX_LENGTH = 255


def is_opaque_id(value: str) -> bool:
    """Whether ``value`` is a non-empty identifier of the opaque identifier grammar."""
    return 0 < len(value) <= OPAQUE_ID_MAX_LENGTH and all(c in OPAQUE_ID_ALPHABET for c in value)
