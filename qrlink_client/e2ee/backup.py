"""Server-side key backup, ``m.megolm_backup.v1.curve25519-aes-sha2`` (spec "Server-side key backups").

The backup key is a Curve25519 key pair: sessions are encrypted to the public key, published as
``auth_data.public_key`` of ``GET /room_keys/version``; the private key travels in ``m.login.secrets`` and in
SSSS (secret ``m.megolm_backup.v1``), both as the unpadded base64 of its 32 bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .._b64 import InvalidBase64, b64decode, b64encode
from ._keys import PrivateKey32
from .errors import SecretsMismatch
from .signing import Signer, sign_json

__all__ = ["MEGOLM_BACKUP_ALGORITHM", "BackupKey", "backup_auth_data", "check_backup_key"]

MEGOLM_BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


class BackupKey(PrivateKey32):
    """A Curve25519 backup private key. ``repr`` shows only the public key.

    The public key is ``auth_data.public_key`` of the backup version (:attr:`public_key_base64`).
    """

    __slots__ = ()

    _KEY_KIND = "a Curve25519 private key"

    def _load(self, secret: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()

    def private_key(self) -> bytes:
        """The 32 private bytes. Secret."""
        return self._secret

    def private_key_base64(self) -> str:
        """The unpadded base64 of the private key, as ``m.login.secrets`` and SSSS carry it. Secret."""
        return b64encode(self._secret)


def backup_auth_data(key: BackupKey, *, user_id: str, signers: Sequence[tuple[str, Signer]] = ()) -> dict[str, Any]:
    """The ``auth_data`` of a new backup version, signed by each ``(key id, signer)`` pair in ``signers``.

    Clients trust a backup when ``auth_data`` carries a signature by the master key or a verified device.
    """
    auth_data: dict[str, Any] = {"public_key": key.public_key_base64}
    for key_id, signer in signers:
        auth_data = sign_json(auth_data, signer_id=user_id, key_id=key_id, key=signer)
    return auth_data


def check_backup_key(
    key: BackupKey, backup_version: str, algorithm: str, version_info: Mapping[str, Any] | None
) -> None:
    """Check a backup secret against ``GET /room_keys/version`` (``None`` when the server has no backup).

    Raises :class:`SecretsMismatch` with ``key_name`` ``backup_version``, ``backup_algorithm`` or
    ``backup_key``.
    """
    if version_info is None:
        raise SecretsMismatch("backup_version", "the homeserver has no key backup")
    if version_info.get("version") != backup_version:
        raise SecretsMismatch("backup_version", "the homeserver's current backup version is a different one")
    if version_info.get("algorithm") != algorithm:
        raise SecretsMismatch("backup_algorithm", "the homeserver's backup uses a different algorithm")
    auth_data = version_info.get("auth_data")
    published = auth_data.get("public_key") if isinstance(auth_data, Mapping) else None
    if not isinstance(published, str):
        raise SecretsMismatch("backup_key", "the homeserver's backup has no auth_data.public_key")
    try:
        published_raw = b64decode(published)
    except InvalidBase64:
        raise SecretsMismatch("backup_key", "the published backup public key is not valid base64") from None
    if not hmac.compare_digest(published_raw, key.public_key):
        raise SecretsMismatch("backup_key", "the private key does not match the backup's published public key")
