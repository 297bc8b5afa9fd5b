"""The recovery key: how a secret storage key is shown to and typed by a user (spec "Key representation").

Bytes ``0x8B 0x01`` ‖ 32-byte key ‖ parity byte (the XOR of all preceding bytes), encoded in base58 with the
Bitcoin alphabet and split into groups of four characters by spaces. Whitespace is insignificant when
decoding.
"""

from __future__ import annotations

from functools import reduce

from .errors import InvalidKeyMaterial, RecoveryKeyFormatError, RecoveryKeyParityError, RecoveryKeyPrefixError

__all__ = ["RECOVERY_KEY_PREFIX", "decode_recovery_key", "encode_recovery_key"]

RECOVERY_KEY_PREFIX = b"\x8b\x01"
"""The two bytes every decoded recovery key starts with."""

_KEY_LENGTH = 32
_DECODED_LENGTH = len(RECOVERY_KEY_PREFIX) + _KEY_LENGTH + 1
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ALPHABET_INDEX = {char: index for index, char in enumerate(_ALPHABET)}
_GROUP = 4
# 35 bytes starting 0x8B are 48 base58 digits; a few more for leading "1"s still decode to the wrong length.
_MAX_COMPACT_LENGTH = 64


def encode_recovery_key(key: bytes) -> str:
    """The recovery key text for a 32-byte secret storage key, in space-separated groups of four."""
    if len(key) != _KEY_LENGTH:
        raise InvalidKeyMaterial(f"a secret storage key is {_KEY_LENGTH} bytes, got {len(key)}")
    body = RECOVERY_KEY_PREFIX + key
    text = _b58encode(body + bytes([_parity(body)]))
    return " ".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def decode_recovery_key(text: str) -> bytes:
    """The 32-byte secret storage key in a recovery key.

    Raises :class:`RecoveryKeyFormatError` (not base58, wrong length), :class:`RecoveryKeyPrefixError` or
    :class:`RecoveryKeyParityError`. Messages never contain the key.
    """
    compact = "".join(text.split())
    if len(compact) > _MAX_COMPACT_LENGTH:
        # Refused before decoding: base58 decoding is quadratic in the length.
        raise RecoveryKeyFormatError(f"a recovery key decodes to {_DECODED_LENGTH} bytes; this text is far longer")
    decoded = _b58decode(compact)
    if len(decoded) != _DECODED_LENGTH:
        raise RecoveryKeyFormatError(f"a recovery key decodes to {_DECODED_LENGTH} bytes, got {len(decoded)}")
    if decoded[: len(RECOVERY_KEY_PREFIX)] != RECOVERY_KEY_PREFIX:
        raise RecoveryKeyPrefixError("the recovery key does not start with the 0x8B 0x01 prefix")
    if _parity(decoded[:-1]) != decoded[-1]:
        raise RecoveryKeyParityError("the recovery key's parity byte is wrong (check for a typing mistake)")
    return decoded[len(RECOVERY_KEY_PREFIX) : -1]


def _parity(data: bytes) -> int:
    return reduce(lambda acc, byte: acc ^ byte, data, 0)


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_ALPHABET[remainder])
    # Each leading zero byte is written as the zero digit "1", as in Bitcoin's base58.
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(digits))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _ALPHABET_INDEX.get(char)
        if digit is None:
            raise RecoveryKeyFormatError("the recovery key contains a character outside the base58 alphabet")
        number = number * 58 + digit
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * leading_zeros + body
