"""Who is the client, and which URL did it use? Answered from the socket, or from trusted proxies' headers.

Forwarding headers are believed only when the TCP peer is in the configured trusted-proxy networks; anyone else
could forge them to dodge rate limits or to plant a foreign host in the Gen-1 session URL. Even behind a trusted
proxy, exactly one family is read, the one the operator says the proxy writes (``forwarded_header``):
``X-Forwarded-For/-Proto/-Host`` by default, or RFC 7239 ``Forwarded``. A proxy overwrites or appends to the
family it writes and passes the other through untouched, so reading both would let a client's own
``Forwarded: for=…;host=…`` through.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Literal

from .http import MatrixError, Request
from .protocol import M_INVALID_PARAM

ForwardedHeader = Literal["x-forwarded", "forwarded"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# host[:port] as it may appear in a URL authority: a reg-name or IPv4, or a bracketed IPv6 literal.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$")
_FORWARDED_PAIR_RE = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def _parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` header: dicts of lower-cased parameter names to unquoted values."""
    elements: list[dict[str, str]] = []
    for element in value.split(","):
        params: dict[str, str] = {}
        for pair in element.split(";"):
            match = _FORWARDED_PAIR_RE.fullmatch(pair)
            if match is None:
                continue
            raw = match.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params[match.group(1).lower()] = raw
        elements.append(params)
    return elements


def _node_ip(node: str) -> str | None:
    """The address in a ``Forwarded: for=`` node (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``) or ``None``."""
    node = node.strip()
    if node.startswith("["):
        node = node[1 : node.find("]")] if "]" in node else ""
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(node))
    except ValueError:
        return None


def valid_host(value: str) -> bool:
    """Whether ``value`` can stand as the authority of an http(s) URL (a port, if any, from 1 to 65535)."""
    match = _HOST_RE.match(value) if len(value) <= 255 else None
    if match is None:
        return False
    port = match.group("port")
    return port is None or 0 < int(port) <= 65535


def _joined(request: Request, name: bytes) -> str | None:
    """Every ``name`` header line joined with commas (RFC 9110 §5.3), in order; ``None`` when there is none.

    A proxy may append its own line instead of extending the client's, so the last line alone is not enough.
    """
    values = [value for key, value in request.scope["headers"] if key == name]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


class ProxyResolver:
    """Resolves the client address and the request origin, honouring headers from trusted proxies only."""

    def __init__(self, trusted: Sequence[IPNetwork], header: ForwardedHeader = "x-forwarded") -> None:
        self._trusted = tuple(trusted)
        self._rfc7239 = header == "forwarded"
        self._cache: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` lies in one of the trusted proxy networks."""
        if not self._trusted:
            return False
        known = self._cache.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            trusted = False
        else:
            trusted = any(ip in network for network in self._trusted)
        if len(self._cache) < 4096:
            self._cache[address] = trusted
        return trusted

    def _peer(self, request: Request) -> str:
        client = request.scope.get("client")
        return str(client[0]) if client else ""

    def client_ip(self, request: Request) -> str:
        """The address rate limits are keyed on: the first untrusted hop, walking back from our TCP peer."""
        peer = self._peer(request)
        if not self.is_trusted(peer):
            return peer
        hops = self._hops(request)
        if hops is None:
            return peer
        for hop in reversed(hops):
            if hop is None:
                # An obfuscated or garbled hop: nothing before it can be attributed; keep the last good one.
                return peer
            if not self.is_trusted(hop):
                return hop
            peer = hop
        return peer

    def _hops(self, request: Request) -> list[str | None] | None:
        """The client addresses listed in the configured forwarding header, farthest first."""
        if self._rfc7239:
            forwarded = _joined(request, b"forwarded")
            if forwarded is None:
                return None
            return [_node_ip(element.get("for", "")) for element in _parse_forwarded(forwarded)]
        xff = _joined(request, b"x-forwarded-for")
        if xff is None:
            return None
        return [_node_ip(part) for part in xff.split(",")]

    def origin(self, request: Request) -> str:
        """``scheme://host[:port]`` as the client used it; 400 ``M_INVALID_PARAM`` for an unusable host."""
        scheme: str = request.scope.get("scheme", "http")
        host_header = request.header(b"host")
        host = host_header.decode("latin-1") if host_header is not None else ""
        if self.is_trusted(self._peer(request)):
            # The value nearest to us was written by the trusted proxy itself; earlier ones may be
            # client-made.
            if self._rfc7239:
                forwarded = _joined(request, b"forwarded")
                if forwarded is not None:
                    last = _parse_forwarded(forwarded)[-1]
                    scheme = last.get("proto", scheme)
                    host = last.get("host", host)
            else:
                xf_proto = _joined(request, b"x-forwarded-proto")
                xf_host = _joined(request, b"x-forwarded-host")
                if xf_proto is not None:
                    scheme = xf_proto.split(",")[-1].strip()
                if xf_host is not None:
                    host = xf_host.split(",")[-1].strip()
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise MatrixError(400, M_INVALID_PARAM, "Unsupported forwarded protocol")
        if not host:
            server = request.scope.get("server")
            if not server:
                raise MatrixError(400, M_INVALID_PARAM, "Missing Host header")
            address = str(server[0])
            host = f"[{address}]:{server[1]}" if ":" in address else f"{address}:{server[1]}"
        if not valid_host(host):
            raise MatrixError(400, M_INVALID_PARAM, "Invalid Host header")
        return f"{scheme}://{host}"
