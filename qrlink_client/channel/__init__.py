"""Secure channels for sign in with QR code: Gen-1 ECIES and Gen-2 HPKE behind one interface.

Both are pure state machines (no I/O, no clock); see :class:`SecureChannel` for the interface and
:mod:`qrlink_client.channel.base` for roles, the check code and the error hierarchy.
"""

from ._url import serialise_url
from .base import (
    ChannelError,
    ChannelStateError,
    CheckCode,
    DecryptionError,
    HandshakeError,
    InvalidAadField,
    InvalidKey,
    MessageDecodeError,
    MissingSequenceToken,
    NonContributoryKey,
    Role,
    SecureChannel,
)
from .ecies import EciesChannel
from .hpke import HpkeChannel, HpkeProfile, build_aad

__all__ = [
    "ChannelError",
    "ChannelStateError",
    "CheckCode",
    "DecryptionError",
    "EciesChannel",
    "HandshakeError",
    "HpkeChannel",
    "HpkeProfile",
    "InvalidAadField",
    "InvalidKey",
    "MessageDecodeError",
    "MissingSequenceToken",
    "NonContributoryKey",
    "Role",
    "SecureChannel",
    "build_aad",
    "serialise_url",
]
