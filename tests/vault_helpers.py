"""Builders for tests of sealed records: a chain with the vault, parties' encryption keys
registered on it, the escrow key set by a passed proposal, and records sealed for them.

The private keys live in the test (as they live with each party off the chain); the chain sees
only public keys, sealed records and commitments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consortia.crypto import Suite
from consortia.execution.contract import Contract
from consortia.execution.contracts import identity_state, regulator_state
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.governance import Governance
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.receivable import Receivable
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.contracts.system import System
from consortia.execution.contracts.vault import Vault
from consortia.execution.engine import Receipt
from consortia.privacy.envelope import (
    ESCROW_PARTY,
    Reader,
    Sealed,
    encode_sealed,
    seal,
)
from tests.execution_helpers import Ledger, make_ledger
from tests.unit.test_contract_governance import executed, send

CONTRACTS: list[type[Contract]] = [
    System,
    Governance,
    Identity,
    Asset,
    Regulator,
    Vault,
    Receivable,
]
# The four committee banks' accounts vote (test_contract_governance.VOTERS); "reg" is a
# regulator account; the rest trade.
ACCOUNTS = {
    "alice": ("bank-0", 0),
    "bob": ("bank-1", 0),
    "carol": ("bank-2", 0),
    "dave": ("bank-3", 0),
    "reg": ("regulator", 0),
    "carmaker": ("bank-1", 300_000_000),
    "tier1": ("bank-2", 0),
    "tier2": ("bank-2", 0),
    "bank": ("bank-3", 300_000_000),
    "bank2": ("bank-0", 300_000_000),
    "outsider": ("bank-2", 0),
}


@dataclass
class Sealing:
    """A chain and the encryption key pairs its parties hold, by version (index version - 1)."""

    chain: Ledger
    keys: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)

    @property
    def suite(self) -> Suite:
        return self.chain.suite

    def register(self, account: str) -> Receipt:
        """`account` registers a fresh encryption key (its next version)."""
        private_key, public_key = self.suite.generate_encryption_keypair()
        receipt = send(
            self.chain, account, "identity", "set_encryption_key", {"public_key": public_key.hex()}
        )
        assert receipt.ok, receipt
        self.keys.setdefault(account, []).append((private_key, public_key))
        assert receipt.result == len(self.keys[account])
        return receipt

    def set_escrow(self) -> None:
        """Governance sets (or rotates) the escrow key to a fresh one."""
        private_key, public_key = self.suite.generate_encryption_keypair()
        executed(self.chain, "set_escrow_key", public_key=public_key.hex())
        self.keys.setdefault(ESCROW_PARTY, []).append((private_key, public_key))

    def reader(self, party: str, version: int | None = None) -> Reader:
        pairs = self.keys[party]
        number = len(pairs) if version is None else version
        return Reader(party, number, pairs[number - 1][1])

    def private_key(self, party: str, version: int | None = None) -> bytes:
        pairs = self.keys[party]
        return pairs[(len(pairs) if version is None else version) - 1][0]

    def seal(self, value: Any, readers: list[str], label: str = "test.terms") -> Sealed:
        return seal(
            self.suite, label, value, [self.reader(p) for p in readers], self.reader(ESCROW_PARTY)
        )

    def put(
        self,
        owner: str,
        record: str,
        value: Any,
        readers: list[str],
        *,
        label: str = "test.terms",
        sealed: Sealed | None = None,
    ) -> Receipt:
        """`owner` stores `value` sealed for `readers` (or the given sealed record)."""
        sealed = sealed if sealed is not None else self.seal(value, readers, label)
        args = {"record": record, "sealed": chunked(encode_sealed(sealed)), "readers": readers}
        return send(self.chain, owner, "vault", "put", args)

    def stored(self, record: str) -> dict[str, Any]:
        value = self.chain.engine.query("vault", f"record/{record}")
        assert isinstance(value, dict)
        return value


def sealing(
    parties: tuple[str, ...] = ("carmaker", "tier1", "tier2", "bank", "bank2", "reg"),
    *,
    suite_name: str = "intl",
    escrow: bool = True,
    contracts: list[type[Contract]] = CONTRACTS,
    accounts: dict[str, tuple[str, int]] = ACCOUNTS,
) -> Sealing:
    """A chain whose `parties` registered an encryption key, with the escrow key set."""
    chain = make_ledger(contracts, accounts, suite_name=suite_name)
    built = Sealing(chain)
    for party in parties:
        built.register(party)
    if escrow:
        built.set_escrow()
    return built


def chunked(text: str, size: int = 4096) -> list[str]:
    """Hex text as a transaction argument: chunks of at most `size` characters."""
    return [text[start : start + size] for start in range(0, len(text), size)]


def current_version(chain: Ledger, party: str) -> int | None:
    """The current key version the chain holds for `party` (the escrow party included)."""
    if party == ESCROW_PARTY:
        found = regulator_state.read_escrow_key(chain.engine.query)
    else:
        found = identity_state.read_encryption_key(chain.engine.query, party)
    return None if found is None else found[0]
