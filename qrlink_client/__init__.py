"""Client library for Matrix sign in with QR code (MSC4108 / MSC4388)."""

__version__ = "0.1.0"
