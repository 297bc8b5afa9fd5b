"""Read the binary payload of a QR code from an image (optional extra ``qr-image``: zxing-cpp + Pillow).

Only zxing-cpp's ``Barcode.bytes`` is used: it returns the payload exactly, including 0x00 and bytes >= 0x80.
``Barcode.text`` transcodes binary content and garbles it, and OpenCV's detector stops at the first 0x00 byte,
which every QR-login payload contains.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

from ..errors import QrLinkError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "MultipleQrCodes",
    "NoQrCodeFound",
    "QrImageDependencyMissing",
    "QrImageError",
    "UnreadableImage",
    "read_qr_image",
]


class QrImageError(QrLinkError):
    """Base class of errors reading a QR code from an image."""


class QrImageDependencyMissing(QrImageError):
    """zxing-cpp or Pillow is not installed (install the ``qr-image`` extra)."""


class UnreadableImage(QrImageError):
    """The file or bytes are not an image Pillow can open."""


class NoQrCodeFound(QrImageError):
    """The image holds no readable QR code."""


class MultipleQrCodes(QrImageError):
    """The image holds several QR codes with different payloads, so which one is meant is unclear."""


def _open_image(source: str | os.PathLike[str] | bytes) -> Image:
    try:
        from PIL import Image as PilImage
        from PIL import UnidentifiedImageError
    except ImportError:
        raise QrImageDependencyMissing("reading QR images needs Pillow: install qrlink[qr-image]") from None
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            image = PilImage.open(io.BytesIO(bytes(source)))
        else:
            image = PilImage.open(os.fspath(source))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(f"cannot open the image: {type(exc).__name__}") from None
    return image


def read_qr_image(source: str | os.PathLike[str] | bytes) -> bytes:
    """Return the exact payload bytes of the single QR code in an image.

    ``source`` is a file path or the encoded image file's bytes (PNG, JPEG, ...). Raises
    :class:`QrImageDependencyMissing`, :class:`UnreadableImage`, :class:`NoQrCodeFound` or
    :class:`MultipleQrCodes`.
    """
    try:
        import zxingcpp
    except ImportError:
        raise QrImageDependencyMissing("reading QR images needs zxing-cpp: install qrlink[qr-image]") from None
    image = _open_image(source)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    payloads = {barcode.bytes for barcode in barcodes if barcode.valid}
    if not payloads:
        raise NoQrCodeFound("no QR code found in the image")
    if len(payloads) > 1:
        raise MultipleQrCodes(f"the image holds {len(payloads)} different QR codes")
    return payloads.pop()
