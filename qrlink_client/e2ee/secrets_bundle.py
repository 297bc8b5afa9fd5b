"""The ``m.login.secrets`` payload: what the existing device hands the new one.

```
{"cross_signing": {"master_key": b64, "self_signing_key": b64, "user_signing_key": b64},
 "backup": {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "key": b64, "backup_version": "1"}}
```

Each ``b64`` is the unpadded base64 of a 32-byte private key. ``backup`` is optional; rust-sdk writes
``"backup": null`` when there is none, so parsing accepts absent and ``null`` alike (and this module omits
it).

The wire format: docs/protocol.md, "The m.login.* messages".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backup import MEGOLM_BACKUP_ALGORITHM, BackupKey, check_backup_key
from .cross_signing import CROSS_SIGNING_KEY_NAMES, CrossSigningKeys, check_cross_signing_keys
from .errors import InvalidKeyMaterial, InvalidSecretsBundle
from .signing import Ed25519SigningKey

__all__ = ["SECRETS_MESSAGE_TYPE", "BackupSecret", "SecretsBundle"]

SECRETS_MESSAGE_TYPE = "m.login.secrets"


@dataclass(frozen=True, repr=False)
class BackupSecret:
    """The ``backup`` member: the backup private key and the backup version it belongs to."""

    key: BackupKey
    backup_version: str
    algorithm: str = MEGOLM_BACKUP_ALGORITHM

    def to_content(self) -> dict[str, str]:
        """The JSON object for ``m.login.secrets.backup``. Contains the private key."""
        return {
            "algorithm": self.algorithm,
            "key": self.key.private_key_base64(),
            "backup_version": self.backup_version,
        }

    @classmethod
    def from_content(cls, data: Any) -> BackupSecret:
        """Parse ``m.login.secrets.backup``; raises :class:`InvalidSecretsBundle`."""
        if not isinstance(data, Mapping):
            raise InvalidSecretsBundle("backup is not a JSON object")
        algorithm = data.get("algorithm")
        if algorithm != MEGOLM_BACKUP_ALGORITHM:
            # Named only when it is a short string: the peer chooses it, and the repr of a deeply nested list
            # would itself raise RecursionError.
            shown = repr(algorithm) if isinstance(algorithm, str) and len(algorithm) <= 64 else "(not shown)"
            raise InvalidSecretsBundle(f"unsupported backup algorithm {shown}")
        version = data.get("backup_version")
        if not isinstance(version, str) or not version:
            raise InvalidSecretsBundle("backup.backup_version is missing or not a string")
        key = data.get("key")
        if not isinstance(key, str):
            raise InvalidSecretsBundle("backup.key is missing or not a string")
        try:
            return cls(key=BackupKey.from_base64(key), backup_version=version, algorithm=algorithm)
        except InvalidKeyMaterial:
            raise InvalidSecretsBundle("backup.key is not the base64 of a 32-byte key") from None

    def check_against(self, version_info: Mapping[str, Any] | None) -> None:
        """Check against ``GET /room_keys/version`` (``None`` if the server has no backup); see
        :func:`~.backup.check_backup_key`."""
        check_backup_key(self.key, self.backup_version, self.algorithm, version_info)

    def __repr__(self) -> str:
        return (
            f"BackupSecret(algorithm={self.algorithm!r}, backup_version={self.backup_version!r}, "
            f"public_key={self.key.public_key_base64!r})"
        )


@dataclass(frozen=True, repr=False)
class SecretsBundle:
    """The content of ``m.login.secrets``. ``repr`` shows public keys only."""

    cross_signing: CrossSigningKeys
    backup: BackupSecret | None = None

    def to_content(self) -> dict[str, Any]:
        """The message content without its ``type`` (the flow layer frames it). Contains private keys."""
        content: dict[str, Any] = {
            "cross_signing": {name: self.cross_signing.by_name(name).seed_base64() for name in CROSS_SIGNING_KEY_NAMES}
        }
        if self.backup is not None:
            content["backup"] = self.backup.to_content()
        return content

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> SecretsBundle:
        """Parse the message content (a ``type`` member, if present, is ignored).

        Raises :class:`InvalidSecretsBundle` naming the bad field, never its value.
        """
        cross_signing = content.get("cross_signing")
        if not isinstance(cross_signing, Mapping):
            raise InvalidSecretsBundle("cross_signing is missing or not a JSON object")
        keys: dict[str, Ed25519SigningKey] = {}
        for name in CROSS_SIGNING_KEY_NAMES:
            seed = cross_signing.get(name)
            if not isinstance(seed, str):
                raise InvalidSecretsBundle(f"cross_signing.{name} is missing or not a string")
            try:
                keys[name] = Ed25519SigningKey.from_base64(seed)
            except InvalidKeyMaterial:
                raise InvalidSecretsBundle(f"cross_signing.{name} is not the base64 of a 32-byte seed") from None
        backup_content = content.get("backup")
        backup = None if backup_content is None else BackupSecret.from_content(backup_content)
        return cls(cross_signing=CrossSigningKeys(**keys), backup=backup)

    def check_against(
        self,
        *,
        user_id: str,
        keys_query_response: Mapping[str, Any],
        backup_version_info: Mapping[str, Any] | None = None,
    ) -> None:
        """Check every secret against what the homeserver publishes.

        ``keys_query_response`` is the ``/keys/query`` answer for ``user_id``; ``backup_version_info`` the
        answer of ``GET /room_keys/version`` (``None`` if there is no backup; only consulted when the bundle
        has one). Raises :class:`~.errors.SecretsMismatch` naming the first key that does not match.
        """
        check_cross_signing_keys(self.cross_signing, keys_query_response, user_id)
        if self.backup is not None:
            self.backup.check_against(backup_version_info)

    def __repr__(self) -> str:
        return f"SecretsBundle(cross_signing={self.cross_signing!r}, backup={self.backup!r})"
