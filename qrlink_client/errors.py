"""The root of the client library's error hierarchy.

Every error the library raises on purpose derives from :class:`QrLinkError`, so an application can catch the whole
family in one place and still tell the kinds apart by their class.
"""


class QrLinkError(Exception):
    """Base class of every error raised by :mod:`qrlink_client`."""
