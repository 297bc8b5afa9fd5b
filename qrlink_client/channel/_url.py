"""The serialisation Rust's ``url`` crate gives an http(s) base URL (docs/protocol.md, "Profiles").

Element X binds its base URL into the Gen-2 AAD as ``Url::as_str()``: the WHATWG URL serialisation, which is not
the text carried in the QR code. Its encoder writes ``https://host`` for ``https://host/``, and the scanner
parses that back into ``https://host/``, so a peer that binds the QR bytes instead fails every open.

Only what a homeserver base URL needs is reproduced here:

* scheme and host are lower-cased;
* the scheme's default port (80 for ``http``, 443 for ``https``) and an empty port are dropped;
* an empty path becomes ``/``;
* an IPv6 host is written in the WHATWG form: lower-case hex, no leading zeros, the first longest run of two or
  more zero groups as ``::``, never a dotted IPv4 tail;
* user info, path, query and fragment are kept as given (the crate would also percent-encode and resolve dot
  segments; a base URL has no business needing either).

A host that is not ASCII is refused rather than guessed at: the crate maps it through UTS #46 and Punycode, and
a wrong guess would only show up as a failed decryption.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["serialise_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _ipv6_text(host: str) -> str:
    """``[…]`` in the WHATWG IPv6 serialisation (RFC 5952 compression, hex throughout)."""
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv6 address") from None
    if address.scope_id is not None:
        raise ValueError("an IPv6 zone identifier is not allowed in a URL host")
    groups = [int(group, 16) for group in address.exploded.split(":")]
    # The first longest run of zero groups, if it is at least two long, becomes "::".
    best_start, best_length, start = -1, 1, -1
    for index, group in enumerate([*groups, 1]):
        if group == 0 and start < 0:
            start = index
        elif group != 0 and start >= 0:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = -1
    if best_start < 0:
        return "[" + ":".join(f"{group:x}" for group in groups) + "]"
    head = ":".join(f"{group:x}" for group in groups[:best_start])
    tail = ":".join(f"{group:x}" for group in groups[best_start + best_length :])
    return f"[{head}::{tail}]"


def serialise_url(url: str) -> str:
    """``url`` as the ``url`` crate serialises it; :class:`ValueError` if it is not an absolute http(s) URL."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _DEFAULT_PORTS:
        raise ValueError("URL must start with http:// or https://")
    # The authority ends at the first "/", "?" or "#"; everything after it is kept verbatim.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        port = parts.port
    except ValueError:
        raise ValueError("URL authority cannot be parsed") from None
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host")
    userinfo, at, _ = authority.rpartition("@")
    if host.startswith("[") or ":" in host:
        host_text = _ipv6_text(host.strip("[]"))
    elif not host.isascii():
        raise ValueError("non-ASCII hosts need IDNA processing, which is not implemented")
    else:
        host_text = host  # urlsplit has lower-cased it
    port_text = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    if not tail or tail[0] in "?#":
        tail = "/" + tail
    return f"{scheme}://{userinfo}{at}{host_text}{port_text}{tail}"
