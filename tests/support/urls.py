"""Building URLs from the protocol's paths (``rendezvous.protocol``), which begin with a slash."""

from __future__ import annotations


def under(base_url: str, path: str) -> str:
    """``path`` under ``base_url``, whether or not the base URL ends in a slash (a homeserver URL does)."""
    return base_url.rstrip("/") + path
