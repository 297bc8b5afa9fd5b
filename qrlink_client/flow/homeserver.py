"""Where the new device signs in, as the protocol tells it: a base URL or a bare server name.

The value comes from the QR code (Gen-1 ``server_name`` field, which is free text; Gen-2 ``base_url``) or from
``m.login.protocols`` (``base_url``, or ``homeserver`` which js-sdk fills with a server name and rust-sdk with a
URL). A server name still needs ``.well-known`` discovery; that is the driver's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..qr import Gen1QrCode, Gen2QrCode, QrCode

__all__ = ["Homeserver"]


@dataclass(frozen=True)
class Homeserver:
    """Exactly one of :attr:`base_url` (client-server API base URL, kept as given) and :attr:`server_name`."""

    base_url: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.base_url is None) == (self.server_name is None):
            raise ValueError("a Homeserver has exactly one of base_url and server_name")

    @classmethod
    def parse(cls, value: str) -> Homeserver:
        """An ``http(s)://`` URL becomes :attr:`base_url`, anything else a :attr:`server_name`.

        ``urlsplit("example.org:8448")`` reports the scheme ``example.org``, so only the two web schemes with a
        host count as URLs.
        """
        value = value.strip()
        if not value:
            raise ValueError("empty homeserver")
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. "https://[::1": not a URL (a peer may send anything), so a server name
            return cls(server_name=value)
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            return cls(base_url=value)
        return cls(server_name=value)

    @classmethod
    def from_qr(cls, qr: QrCode) -> Homeserver | None:
        """The homeserver a scanned QR names (Gen-2 always; Gen-1 only in reciprocate mode)."""
        if isinstance(qr, Gen2QrCode):
            return cls(base_url=qr.base_url)
        if isinstance(qr, Gen1QrCode) and qr.server_name:
            return cls.parse(qr.server_name)
        return None

    @property
    def value(self) -> str:
        """The URL or the server name, whichever this is."""
        return self.base_url if self.base_url is not None else str(self.server_name)
