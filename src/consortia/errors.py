"""One exception hierarchy with stable, machine-readable codes.

Every error a user or a peer can cause is a `ConsortiaError` with a `code` that never changes
once published (clients match on it) and a one-line human message. Broken internal invariants
are not errors of this kind: they are `AssertionError`s that stop the node.
"""

from __future__ import annotations

from typing import ClassVar


class ConsortiaError(Exception):
    """Base of every expected failure. `code` is stable; `message` is for people."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(ConsortiaError):
    code = "invalid_argument"


class DecodeError(ConsortiaError):
    """Bytes that are not exactly one canonical encoding of a known type."""

    code = "decode_error"


class UnknownSuiteError(ConsortiaError):
    code = "unknown_suite"


class CryptoError(ConsortiaError):
    """Malformed keys, failed authentication of ciphertext and the like."""

    code = "crypto_error"


class KeyFileError(ConsortiaError):
    """A key file that is missing, malformed or of the wrong kind."""

    code = "key_file_invalid"


class WrongPassphraseError(ConsortiaError):
    code = "wrong_passphrase"


class PassphraseUnavailableError(ConsortiaError):
    code = "passphrase_unavailable"


class GenesisError(ConsortiaError):
    """A genesis file that is malformed, inconsistent or edited after its hash was published."""

    code = "genesis_invalid"


class ConfigError(ConsortiaError):
    code = "config_invalid"


class AlreadyExistsError(ConsortiaError):
    code = "already_exists"


class WeakPassphraseError(ConsortiaError):
    """A new passphrase that is too short to protect keys at rest."""

    code = "passphrase_too_short"


class CertificateError(ConsortiaError):
    """A certificate that is unreadable, expired, or not issued as the consortium requires."""

    code = "certificate_invalid"


class InsecurePermissionsError(ConsortiaError):
    """A secret (a passphrase file, a key directory) that others than its owner can reach."""

    code = "insecure_permissions"


class InterruptedByUserError(ConsortiaError):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) stopped a command; what it was making was removed."""

    code = "interrupted"


class KeyRequestError(ConsortiaError):
    """A member's or node's key request that is malformed, unsigned or inconsistent."""

    code = "key_request_invalid"


class NoConsortiumError(ConsortiaError):
    """A folder that holds no consortium (no genesis.json) where one is needed."""

    code = "no_consortium"


class AccountKeyNotFoundError(ConsortiaError):
    """No key file for the account a command should sign for."""

    code = "no_account_key"


class NodeUnavailableError(ConsortiaError):
    """A node's API does not answer, or no node of a local cluster is running."""

    code = "node_unavailable"


class NodeStartError(ConsortiaError):
    """A node process exited while starting, or did not serve its API in time."""

    code = "node_start_failed"


class NodeStopError(ConsortiaError):
    """A node process did not exit in time after it was asked to stop."""

    code = "node_stop_failed"


class NodeRefusalError(ConsortiaError):
    """A node refused a request, or a transaction failed in its block: the error carries the
    node's own stable code (`bad_signature`, `insufficient_funds`, ...) and prints it."""

    code = "node_refused"

    def __init__(self, node_code: str, message: str) -> None:
        super().__init__(message)
        self.node_code = node_code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.node_code, "message": self.message}

    def __str__(self) -> str:
        return f"{self.node_code}: {self.message}"


class BenchError(ConsortiaError):
    """A benchmark could not run to its end: a client process failed, or no node answered."""

    code = "bench_failed"


class PrivacyError(ConsortiaError):
    """A confidential record, reader, opening or escrow share that cannot be used.

    Each failure is its own subclass with its own stable code; catch `PrivacyError` for all.
    """

    code = "privacy_error"


class MalformedSealedRecordError(PrivacyError):
    """Text or bytes that are not exactly one canonical, in-bounds sealed record."""

    code = "malformed_sealed_record"


class InvalidRecordLabelError(PrivacyError):
    code = "invalid_record_label"


class InvalidRecordValueError(PrivacyError):
    """A value that is not canonical JSON-like data (floats, bytes, ...) or is too large."""

    code = "invalid_record_value"


class InvalidReaderError(PrivacyError):
    """A reader with a malformed party name, key version or encryption public key."""

    code = "invalid_reader"


class DuplicateReaderError(PrivacyError):
    code = "duplicate_reader"


class TooManyReadersError(PrivacyError):
    code = "too_many_readers"


class SealedRecordTooLargeError(PrivacyError):
    code = "sealed_record_too_large"


class NotAReaderError(PrivacyError):
    """The record holds no wrapped key for this party."""

    code = "not_a_reader"


class NoEncryptionKeyError(PrivacyError):
    """The account (or the regulator's escrow) has no encryption key on the chain yet."""

    code = "no_encryption_key"


class UnknownRecordError(PrivacyError):
    """The vault holds no record of that id."""

    code = "unknown_record"


class UnwrapFailedError(PrivacyError):
    """A wrapped key that does not open: a wrong private key, or the wrapped key was altered
    or taken from another record."""

    code = "unwrap_failed"


class CiphertextRejectedError(PrivacyError):
    """The record's ciphertext fails authentication, or its plaintext is malformed."""

    code = "ciphertext_rejected"


class CommitmentMismatchError(PrivacyError):
    """The decrypted value does not match the record's commitment."""

    code = "commitment_mismatch"


class EscrowSharesTooFewError(PrivacyError):
    code = "escrow_shares_too_few"


class EscrowSharesMixedError(PrivacyError):
    """Shares of different escrow keys or different splits."""

    code = "escrow_shares_mixed"


class EscrowShareDuplicateError(PrivacyError):
    code = "escrow_share_duplicate"


class EscrowShareInvalidError(PrivacyError):
    """A share that is malformed or was altered."""

    code = "escrow_share_invalid"


class EscrowRecoveryFailedError(PrivacyError):
    """Shares combined into a key that does not open the escrow key, or does not match it."""

    code = "escrow_recovery_failed"
