"""QR codes of Matrix sign in with QR code, both generations.

- :mod:`~qrlink_client.qr.codec`: the binary payload (encode and decode); its names are re-exported here.
- :mod:`~qrlink_client.qr.render`: drawing a payload as PNG, SVG or terminal text (segno).
- :mod:`~qrlink_client.qr.image`: reading a payload back from an image (the optional ``qr-image`` extra).
- :mod:`~qrlink_client.qr.fields`: a decoded code as JSON fields and back, as ``qrlink qr decode`` and the
  interop peer show them.

Only the codec is imported with the package: rendering and image reading load their libraries when used.
"""

from .codec import (
    FieldTooLong,
    Gen1Mode,
    Gen1QrCode,
    Gen2Intent,
    Gen2QrCode,
    InvalidField,
    InvalidIntent,
    InvalidPrefix,
    InvalidPublicKey,
    InvalidType,
    InvalidUrl,
    NotEnoughData,
    NotUtf8,
    QrCode,
    QrCodeError,
    QrPrefix,
    decode_qr,
)

__all__ = [
    "FieldTooLong",
    "Gen1Mode",
    "Gen1QrCode",
    "Gen2Intent",
    "Gen2QrCode",
    "InvalidField",
    "InvalidIntent",
    "InvalidPrefix",
    "InvalidPublicKey",
    "InvalidType",
    "InvalidUrl",
    "NotEnoughData",
    "NotUtf8",
    "QrCode",
    "QrCodeError",
    "QrPrefix",
    "decode_qr",
]
