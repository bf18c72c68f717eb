"""Builders for execution tests: a small genesis with known keys, and signed transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consortia.crypto import Suite
from consortia.crypto import suite as get_suite
from consortia.execution.contract import Contract
from consortia.execution.engine import Engine
from consortia.execution.genesis import engine_from_genesis
from consortia.types.encoding import encode
from consortia.types.genesis import (
    CommitteeSeat,
    ConsensusParams,
    Genesis,
    GenesisAccount,
    GenesisValidator,
    Governance,
    Member,
    MempoolParams,
)
from consortia.types.signing import sign
from consortia.types.transaction import Transaction, TransactionBody

CHAIN_ID = "test-chain"
SUITE = get_suite("intl")


def key_for(name: str, suite: Suite = SUITE) -> tuple[bytes, bytes]:
    private_key = suite.hash(b"account-key:" + name.encode())
    return private_key, suite.public_key(private_key)


@dataclass
class Ledger:
    """A genesis, the engine built from it, and the signing keys of its accounts."""

    engine: Engine
    genesis: Genesis
    keys: dict[str, tuple[bytes, bytes]]
    nonces: dict[str, int] = field(default_factory=dict)
    height: int = 0
    suite: Suite = SUITE
    # A block's time unless given: time_base_ms + height * 1000.
    time_base_ms: int = 0

    def tx(
        self,
        sender: str,
        contract: str,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        version: int = 1,
        nonce: int | None = None,
        expiry: int = 10_000,
    ) -> bytes:
        private_key, public_key = self.keys[sender]
        if nonce is None:
            nonce = self.nonces.get(sender, 0)
            self.nonces[sender] = nonce + 1
        body = TransactionBody(
            CHAIN_ID, sender, public_key, nonce, contract, version, method, args or {}, expiry
        )
        return encode(Transaction(body, sign(self.suite, private_key, body, self.engine.domain)))

    def block_time_ms(self, height: int) -> int:
        """The time `block` gives the block at `height` unless told another."""
        return self.time_base_ms + height * 1000

    def block(self, *txs: bytes, time_ms: int | None = None) -> list[Any]:
        self.height += 1
        result = self.engine.execute_block(
            self.height,
            time_ms if time_ms is not None else self.block_time_ms(self.height),
            list(txs),
        )
        self.engine.commit()
        return result.receipts


def make_ledger(
    contracts: list[type[Contract]],
    accounts: dict[str, tuple[str, int]],
    members: list[Member] | None = None,
    governance: Governance | None = None,
    suite_name: str = "intl",
) -> Ledger:
    """accounts: id -> (sponsor member, CNY balance in fen); `suite_name`: the chain's suite."""
    suite = get_suite(suite_name)
    members = members or [
        Member(name="bank-0", roles=["validator_operator", "member"]),
        Member(name="bank-1", roles=["validator_operator", "member"]),
        Member(name="bank-2", roles=["validator_operator", "member"]),
        Member(name="bank-3", roles=["validator_operator", "member"]),
        Member(name="regulator", roles=["regulator"]),
    ]
    keys = {account: key_for(account, suite) for account in accounts}
    validators = []
    for index in range(4):
        public_key = suite.public_key(suite.hash(f"validator-{index}".encode()))
        validators.append(
            GenesisValidator(
                name=f"node{index}",
                member=f"bank-{index}",
                node_id=suite.hash(public_key).hex(),
                public_key=public_key.hex(),
                certificate_fingerprint="00" * 32,
                voting_power=1,
                address=f"127.0.0.1:{7000 + index}",
            )
        )
    genesis = Genesis(
        chain_id=CHAIN_ID,
        suite=suite_name,
        protocol_version=1,
        genesis_time_ms=0,
        ca_certificate_fingerprint="00" * 32,
        validators=validators,
        consensus=ConsensusParams(),
        mempool=MempoolParams(),
        members=members,
        governance=governance
        or Governance(committee=[CommitteeSeat(member=m.name, weight=1) for m in members[:4]]),
        accounts=[
            GenesisAccount(
                id=account, sponsor=sponsor, public_key=keys[account][1].hex(), balance=balance
            )
            for account, (sponsor, balance) in accounts.items()
        ],
    )
    return Ledger(engine_from_genesis(genesis, contracts), genesis, keys, suite=suite)
