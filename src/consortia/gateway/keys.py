"""Where the gateway finds the encryption public keys it seals answers to: the consumer's
account's and the regulator's escrow key.

`KeyDirectory` is the one question the gateway asks. `ChainKeys` (the default) answers it
from the chain with certified reads: the account's current encryption key as it registered
it with `identity.set_encryption_key` (`identity/encryption_key/<account>`), and the escrow
key a passed governance proposal set (`regulator/escrow_key`), each proven under a certified
state root, read for every request (a rotated key is used from the next request on).
`KeysFile` answers it from a public JSON file the owner keeps (`--keys FILE`), for a chain
without published keys:

    {"escrow": {"version": 1, "public_key": "<hex>"},
     "accounts": {"bank-1.treasury": {"version": 1, "public_key": "<hex>"}, ...}}

Every key is checked with the suite (`valid_encryption_public_key`) before use.

Public keys only: this module must never read or hold a private key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from consortia.crypto import Suite
from consortia.errors import InvalidArgumentError
from consortia.execution.contracts import identity_state, regulator_state
from consortia.gateway.chain import ChainAccess
from consortia.gateway.protocol import integer_within
from consortia.identity.files import read_bounded

KEYS_FILE_BYTES_MAX: Final = 1024 * 1024
ACCOUNTS_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class PublicKey:
    version: int
    public_key: bytes


class KeyDirectory(Protocol):
    def encryption_key(self, account: str) -> PublicKey | None:
        """The account's current encryption public key, or None when it has none."""
        ...

    def escrow_key(self) -> PublicKey | None:
        """The regulator's escrow public key, or None when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class KeysFile:
    """Keys read once from a JSON file (see the module docstring)."""

    escrow: PublicKey | None
    accounts: dict[str, PublicKey]

    def encryption_key(self, account: str) -> PublicKey | None:
        return self.accounts.get(account)

    def escrow_key(self) -> PublicKey | None:
        return self.escrow

    @classmethod
    def load(cls, path: Path, suite: Suite) -> KeysFile:
        raw = read_bounded(path, KEYS_FILE_BYTES_MAX, InvalidArgumentError, "--keys")
        try:
            document = json.loads(raw)
        except ValueError:
            raise InvalidArgumentError(f"--keys {path} is not JSON") from None
        return cls.parse(document, suite, str(path))

    @classmethod
    def parse(cls, document: Any, suite: Suite, where: str = "keys") -> KeysFile:
        if not isinstance(document, dict) or not isinstance(document.get("accounts", {}), dict):
            raise InvalidArgumentError(f"{where}: expected {{'escrow': ..., 'accounts': {{...}}}}")
        accounts = document.get("accounts", {})
        if len(accounts) > ACCOUNTS_MAX:
            raise InvalidArgumentError(f"{where}: at most {ACCOUNTS_MAX} accounts")
        escrow = document.get("escrow")
        return cls(
            None if escrow is None else _key(escrow, suite, f"{where}: escrow"),
            {str(name): _key(entry, suite, f"{where}: {name}") for name, entry in accounts.items()},
        )


def _key(entry: Any, suite: Suite, where: str) -> PublicKey:
    version = entry.get("version") if isinstance(entry, dict) else None
    text = entry.get("public_key") if isinstance(entry, dict) else None
    try:
        public_key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        public_key = b""
    if not integer_within(version, 0, 2**32 - 1):
        raise InvalidArgumentError(f"{where}: version is an integer")
    if not suite.valid_encryption_public_key(public_key):
        raise InvalidArgumentError(f"{where}: not an encryption public key of the {suite.name}")
    return PublicKey(version, public_key)


@dataclass(frozen=True, slots=True)
class ChainKeys:
    """Keys read from the chain through `chain` (certified reads), checked with `suite`."""

    chain: ChainAccess
    suite: Suite

    def encryption_key(self, account: str) -> PublicKey | None:
        record = self.chain.read(
            identity_state.CONTRACT, identity_state.encryption_key_key(account)
        )
        return self._current(record.value)

    def escrow_key(self) -> PublicKey | None:
        record = self.chain.read(regulator_state.CONTRACT, regulator_state.ESCROW_KEY)
        return self._current(record.value)

    def _current(self, record: Any) -> PublicKey | None:
        """The current version of a versioned key record; None when there is none or it is
        not a usable key of the suite."""
        if not isinstance(record, dict):
            return None
        found = identity_state.versioned_key(record, None)
        if found is None:
            return None
        version, text = found
        try:
            public_key = bytes.fromhex(text)
        except ValueError:
            return None
        if not self.suite.valid_encryption_public_key(public_key):
            return None
        return PublicKey(version, public_key)
