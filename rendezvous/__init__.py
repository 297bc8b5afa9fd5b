"""Matrix sign-in-with-QR rendezvous server (MSC4108 Gen-1 and MSC4388 Gen-2)."""

__version__ = "0.1.0"
