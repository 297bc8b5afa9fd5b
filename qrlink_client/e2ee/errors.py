"""Errors raised by the E2EE pieces of sign-in-with-QR.

Every class derives from :class:`E2eeError`, itself a :class:`~qrlink_client.errors.QrLinkError`. Messages
name *which* key, secret or field is at fault and never contain key material, ciphertext or recovery keys.
"""

from __future__ import annotations

from typing import Any

from ..errors import QrLinkError

__all__ = [
    "AlreadyBootstrapped",
    "CanonicalJsonError",
    "E2eeError",
    "HomeserverError",
    "HomeserverUnreachable",
    "InvalidKeyMaterial",
    "InvalidRecoveryKey",
    "InvalidSecretsBundle",
    "InvalidSignature",
    "MalformedSecretStorageData",
    "RecoveryKeyFormatError",
    "RecoveryKeyParityError",
    "RecoveryKeyPrefixError",
    "RoomEventDecryptionError",
    "RoomKeyBackupError",
    "SecretMacMismatch",
    "SecretNotFound",
    "SecretStorageError",
    "SecretsMismatch",
    "SignatureUploadFailed",
    "UnsupportedSecretStorageAlgorithm",
    "UserInteractiveAuthRequired",
    "WrongRecoveryKey",
]


class E2eeError(QrLinkError):
    """Base class of every error raised by :mod:`qrlink_client.e2ee`."""


class CanonicalJsonError(E2eeError, ValueError):
    """A value cannot be encoded as Matrix canonical JSON (a float, an out-of-range integer, a non-string
    key…)."""


class InvalidSignature(E2eeError):
    """A JSON object lacks the expected Ed25519 signature, or the signature does not verify."""


class InvalidKeyMaterial(E2eeError, ValueError):
    """A key, seed or pickle key has the wrong length or is not valid unpadded base64."""


class SecretsMismatch(E2eeError):
    """A secret in the bundle does not match what the homeserver publishes for the user.

    :attr:`key_name` says which one (``master_key``, ``self_signing_key``, ``user_signing_key``,
    ``backup_key``, ``backup_version`` or ``backup_algorithm``); the message never contains key material.
    """

    def __init__(self, key_name: str, reason: str) -> None:
        super().__init__(f"{key_name}: {reason}")
        self.key_name = key_name
        self.reason = reason


class InvalidSecretsBundle(E2eeError, ValueError):
    """An ``m.login.secrets`` payload is malformed (missing field, wrong type, bad base64, wrong key
    length)."""


class InvalidRecoveryKey(E2eeError, ValueError):
    """A recovery key cannot be decoded. The subclasses say why."""


class RecoveryKeyFormatError(InvalidRecoveryKey):
    """The recovery key is not base58 or does not decode to 35 bytes."""


class RecoveryKeyPrefixError(InvalidRecoveryKey):
    """The decoded recovery key does not start with the ``0x8B 0x01`` prefix."""


class RecoveryKeyParityError(InvalidRecoveryKey):
    """The recovery key's parity byte is wrong (most often a typing mistake)."""


class SecretStorageError(E2eeError):
    """Base class of secret storage (SSSS) errors."""


class WrongRecoveryKey(SecretStorageError):
    """The recovery key is well formed but does not match the secret storage key description (its check
    MAC)."""


class SecretMacMismatch(SecretStorageError):
    """An encrypted secret failed its HMAC check: wrong key, wrong secret name, or tampered ciphertext."""


class SecretNotFound(SecretStorageError):
    """The account data holding a secret, the key description or the default key is missing."""


class UnsupportedSecretStorageAlgorithm(SecretStorageError):
    """The secret storage key uses an algorithm other than ``m.secret_storage.v1.aes-hmac-sha2``."""


class MalformedSecretStorageData(SecretStorageError):
    """Secret storage account data has missing fields, bad base64, or wrong IV/MAC lengths."""


class RoomKeyBackupError(E2eeError, ValueError):
    """A backed-up room key cannot be read: malformed ``session_data``, a MAC that does not match (the wrong
    backup key, almost always), or a plaintext that is not a Megolm session export."""


class RoomEventDecryptionError(E2eeError, ValueError):
    """An ``m.room.encrypted`` event cannot be decrypted with the room key at hand: another algorithm or
    session, a message index before the key's first known index, a bad signature or a plaintext for another
    room."""


class HomeserverError(E2eeError):
    """The homeserver answered a request with an error status.

    :attr:`status` is the HTTP status, :attr:`errcode` the Matrix ``errcode`` (if any) and :attr:`body` the
    parsed JSON error body (requests carry secrets only in their bodies, which are never echoed here).
    """

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any] | None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body or {}
        errcode = self.body.get("errcode")
        self.errcode: str | None = errcode if isinstance(errcode, str) else None
        error = self.body.get("error")
        detail = f" {self.errcode}" if self.errcode else ""
        if isinstance(error, str):
            detail += f": {error}"
        super().__init__(f"{method} {path} -> HTTP {status}{detail}")


class HomeserverUnreachable(E2eeError):
    """A request to the homeserver got no answer: the connection failed or timed out, or the answer could not be
    read. :attr:`reason` is the kind of failure (``ConnectTimeout``, ``ConnectError``…); the request itself, which
    carries the access token, is kept out of the message."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(f"{method} {path} failed: {reason}")


class UserInteractiveAuthRequired(HomeserverError):
    """The endpoint demands user-interactive auth (HTTP 401 with ``flows``).

    Retry the call with an ``auth`` dict that carries :attr:`session` and completes one of :attr:`flows`. The
    message lists the flows, and for the ``m.oauth`` stage (OAuth-delegated homeservers) the URL where the user
    approves; ``hint`` says what the caller should do.
    """

    def __init__(
        self, method: str, path: str, status: int, body: dict[str, Any] | None, *, hint: str | None = None
    ) -> None:
        super().__init__(method, path, status, body)
        self.hint = hint
        offered = " or ".join(" then ".join(stages) for stages in self.flows) or "none"
        text = f"{self.args[0]} (user-interactive auth required; the server offers: {offered}"
        if self.oauth_url is not None:
            text += f"; approve at {self.oauth_url}"
        text += ")"
        if hint:
            text += f": {hint}"
        self.args = (text,)

    def with_hint(self, hint: str) -> UserInteractiveAuthRequired:
        """The same error, with ``hint`` appended to its message."""
        return type(self)(self.method, self.path, self.status, self.body, hint=hint)

    @property
    def oauth_url(self) -> str | None:
        """Where the user approves the request on an OAuth-delegated homeserver (the ``m.oauth`` stage's
        ``params.url``, or the unstable ``org.matrix.cross_signing_reset`` one), if offered."""
        params = self.body.get("params")
        if not isinstance(params, dict):
            return None
        for stage in ("m.oauth", "org.matrix.cross_signing_reset"):
            stage_params = params.get(stage)
            if isinstance(stage_params, dict) and isinstance(stage_params.get("url"), str):
                return str(stage_params["url"])
        return None

    @property
    def session(self) -> str | None:
        """The UIA session id to echo back in ``auth.session``."""
        session = self.body.get("session")
        return session if isinstance(session, str) else None

    @property
    def flows(self) -> list[list[str]]:
        """The stage lists the server offers, e.g. ``[["m.login.password"]]``."""
        flows: list[list[str]] = []
        for flow in self.body.get("flows") or []:
            if isinstance(flow, dict) and isinstance(flow.get("stages"), list):
                flows.append([str(stage) for stage in flow["stages"]])
        return flows


class AlreadyBootstrapped(E2eeError):
    """:func:`~qrlink_client.e2ee.bootstrap_user` was called without ``auth`` for a user who already has
    cross-signing keys (a master key in ``/keys/query``).

    Bootstrapping again would replace the user's identity: every device verified so far loses its
    verification and the secrets in secret storage no longer match. To add a device, sign it in with QR login
    (``login_new_device`` on it, ``grant_login`` on a device that has the secrets). To replace the keys on
    purpose, pass ``auth=`` (user-interactive auth; on an OAuth-delegated homeserver approve the reset first).
    :attr:`master_key` is the published master key (public).
    """

    def __init__(self, user_id: str, master_key: str | None) -> None:
        key = f" (master key {master_key})" if master_key else ""
        super().__init__(
            f"{user_id} already has cross-signing keys{key}. To add a device, sign it in with QR login "
            "(login_new_device / grant_login from a device that has the secrets) instead of bootstrapping again; "
            "to replace the keys, which unverifies the user's other devices, call bootstrap_user(..., auth=...) "
            "with user-interactive auth"
        )
        self.user_id = user_id
        self.master_key = master_key


class SignatureUploadFailed(E2eeError):
    """``/keys/signatures/upload`` answered 200 but listed ``failures`` for some keys.

    :attr:`failures` is the server's ``failures`` object (user id → key id → Matrix error).
    """

    def __init__(self, failures: dict[str, Any]) -> None:
        keys = sorted(f"{user}/{key}" for user, per_user in failures.items() for key in (per_user or {}))
        super().__init__(f"the homeserver rejected signatures for {', '.join(keys) or 'some keys'}")
        self.failures = failures
