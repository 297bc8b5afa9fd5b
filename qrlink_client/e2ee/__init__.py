"""End-to-end-encryption pieces of sign in with QR code.

The existing device gathers the user's secrets (:class:`SecretsSource`: :class:`StaticSecrets` or
:class:`SecretStorageSecrets`) into a :class:`SecretsBundle`, the content of ``m.login.secrets``. The new
device checks the bundle against the homeserver and publishes its :class:`OlmDevice` keys signed by the
self-signing key (:func:`publish_new_device`). :func:`bootstrap_user` sets up a fresh user the way an existing
client would. :mod:`.room_keys` encrypts Megolm room keys into the server-side key backup and restores them;
:mod:`.megolm` encrypts and decrypts the room events those keys open.

Needs the ``e2ee`` extra (vodozemac).
"""

from .backup import MEGOLM_BACKUP_ALGORITHM, BackupKey, backup_auth_data, check_backup_key
from .bootstrap import BootstrapResult, bootstrap_user, publish_new_device, secret_storage_account_data
from .canonical_json import canonical_json
from .cross_signing import CROSS_SIGNING_KEY_NAMES, CrossSigningKeys, check_cross_signing_keys
from .device import DEVICE_ALGORITHMS, OlmDevice
from .errors import (
    AlreadyBootstrapped,
    CanonicalJsonError,
    E2eeError,
    HomeserverError,
    HomeserverUnreachable,
    InvalidKeyMaterial,
    InvalidRecoveryKey,
    InvalidSecretsBundle,
    InvalidSignature,
    MalformedSecretStorageData,
    RecoveryKeyFormatError,
    RecoveryKeyParityError,
    RecoveryKeyPrefixError,
    RoomEventDecryptionError,
    RoomKeyBackupError,
    SecretMacMismatch,
    SecretNotFound,
    SecretsMismatch,
    SecretStorageError,
    SignatureUploadFailed,
    UnsupportedSecretStorageAlgorithm,
    UserInteractiveAuthRequired,
    WrongRecoveryKey,
)
from .homeserver import E2eeHomeserver
from .megolm import ENCRYPTED_EVENT_TYPE, decrypt_room_event, encrypt_room_event
from .recovery_key import decode_recovery_key, encode_recovery_key
from .room_keys import (
    MEGOLM_ALGORITHM,
    BackedUpRoomKey,
    decrypt_room_key,
    encrypt_room_key,
    key_backup_data,
    room_keys_from_backup,
)
from .secret_storage import SECRET_STORAGE_ALGORITHM, EncryptedSecret, SecretStorageKey
from .secrets_bundle import SECRETS_MESSAGE_TYPE, BackupSecret, SecretsBundle
from .signing import Ed25519SigningKey, Signer, sign_json, signable_bytes, verify_json
from .sources import AccountDataReader, SecretsSource, SecretStorageSecrets, StaticSecrets

__all__ = [
    "CROSS_SIGNING_KEY_NAMES",
    "DEVICE_ALGORITHMS",
    "ENCRYPTED_EVENT_TYPE",
    "MEGOLM_ALGORITHM",
    "MEGOLM_BACKUP_ALGORITHM",
    "SECRETS_MESSAGE_TYPE",
    "SECRET_STORAGE_ALGORITHM",
    "AccountDataReader",
    "AlreadyBootstrapped",
    "BackedUpRoomKey",
    "BackupKey",
    "BackupSecret",
    "BootstrapResult",
    "CanonicalJsonError",
    "CrossSigningKeys",
    "E2eeError",
    "E2eeHomeserver",
    "Ed25519SigningKey",
    "EncryptedSecret",
    "HomeserverError",
    "HomeserverUnreachable",
    "InvalidKeyMaterial",
    "InvalidRecoveryKey",
    "InvalidSecretsBundle",
    "InvalidSignature",
    "MalformedSecretStorageData",
    "OlmDevice",
    "RecoveryKeyFormatError",
    "RecoveryKeyParityError",
    "RecoveryKeyPrefixError",
    "RoomEventDecryptionError",
    "RoomKeyBackupError",
    "SecretMacMismatch",
    "SecretNotFound",
    "SecretStorageError",
    "SecretStorageKey",
    "SecretStorageSecrets",
    "SecretsBundle",
    "SecretsMismatch",
    "SecretsSource",
    "SignatureUploadFailed",
    "Signer",
    "StaticSecrets",
    "UnsupportedSecretStorageAlgorithm",
    "UserInteractiveAuthRequired",
    "WrongRecoveryKey",
    "backup_auth_data",
    "bootstrap_user",
    "canonical_json",
    "check_backup_key",
    "check_cross_signing_keys",
    "decode_recovery_key",
    "decrypt_room_event",
    "decrypt_room_key",
    "encode_recovery_key",
    "encrypt_room_event",
    "encrypt_room_key",
    "key_backup_data",
    "publish_new_device",
    "room_keys_from_backup",
    "secret_storage_account_data",
    "sign_json",
    "signable_bytes",
    "verify_json",
]
