"""Membership changes through governance, end to end, inside the simulator.

Every replica slot runs its own execution engine over the blocks it commits, exactly as a
node does. A scripted committee submits real, signed transactions: one member proposes to add
a validator, the others vote; when the proposal passes, the governance contract records the
next validator set, leaders put it in `next_epoch`, voters accept it only if their own engine
agrees, and the committed block hands consensus over to the new set.

Owns the scripted committee: its genesis, its signed transactions and the slots' say on epoch
changes. Must never read or write an engine's state but through the contracts' accessors
(governance_state, identity_state) and signed transactions, as a real client would.
"""

from __future__ import annotations

from consortia.crypto import Suite
from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.contracts import governance_state, identity_state
from consortia.execution.engine import EXPIRY_BLOCKS_MAX, Engine
from consortia.execution.genesis import engine_from_genesis
from consortia.execution.membership import EngineMembership
from consortia.types.consensus import Block, EpochConfig, Validator
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
    genesis_hash,
)
from consortia.types.signing import SigningDomain, sign
from consortia.types.transaction import Transaction, TransactionBody

__all__ = ["EngineMembership", "GovernanceScript", "execute"]

GOVERNANCE = governance_state.CONTRACT
JOINING_MEMBER = "bank-new"
PROPOSAL = 1


class GovernanceScript:
    """The genesis every slot's engine starts from, and the committee's transactions."""

    def __init__(
        self,
        *,
        suite: Suite,
        chain_id: str,
        config: EpochConfig,
        joining: Validator,
        account_keys: list[bytes],
        from_height: int,
    ) -> None:
        self._suite = suite
        self._chain_id = chain_id
        self._from_height = from_height
        members = len(config.validators)
        assert len(account_keys) == members
        self._accounts = [
            (f"bank-{i}.gov", key, suite.public_key(key)) for i, key in enumerate(account_keys)
        ]
        self.genesis = Genesis(
            chain_id=chain_id,
            suite="intl" if suite.name == "intl" else "gm",
            protocol_version=1,
            genesis_time_ms=0,
            ca_certificate_fingerprint="00" * 32,
            validators=[
                GenesisValidator(
                    name=f"node{i}",
                    member=f"bank-{i}",
                    node_id=v.node_id.hex(),
                    public_key=v.public_key.hex(),
                    certificate_fingerprint="00" * 32,
                    voting_power=v.voting_power,
                    address=f"127.0.0.1:{9000 + i}",
                )
                for i, v in enumerate(config.validators)
            ],
            consensus=ConsensusParams(),
            mempool=MempoolParams(),
            members=[
                *(
                    Member(name=f"bank-{i}", roles=["validator_operator", "member"])
                    for i in range(members)
                ),
                Member(name=JOINING_MEMBER, roles=["validator_operator", "member"]),
            ],
            governance=Governance(
                committee=[CommitteeSeat(member=f"bank-{i}", weight=1) for i in range(members)],
                validators_min=min(4, members),
                validators_warn=min(5, members),
            ),
            accounts=[
                GenesisAccount(id=name, sponsor=f"bank-{i}", public_key=public.hex())
                for i, (name, _, public) in enumerate(self._accounts)
            ],
        )
        self.domain = SigningDomain(genesis_hash(self.genesis))
        self._proposal_args: dict[str, int | str | bool | list[int | str]] = {
            "kind": "add_validator",
            "node_id": joining.node_id.hex(),
            "public_key": joining.public_key.hex(),
            "voting_power": joining.voting_power,
        }

    def new_engine(self) -> Engine:
        return engine_from_genesis(self.genesis, BUILTIN_CONTRACTS)

    def payload(self, engine: Engine, height: int) -> list[bytes]:
        """The committee's transactions this engine has not applied yet, in order."""
        if height < self._from_height:
            return []
        proposed = governance_state.read_proposal(engine.query, PROPOSAL) is not None
        txs = []
        for index, (account, private_key, public_key) in enumerate(self._accounts):
            record = identity_state.read_account(engine.query, account)
            if record is None or record["nonce"] > 0:
                continue
            if index == 0 and not proposed:
                txs.append(
                    self._tx(account, private_key, public_key, "propose", self._proposal_args)
                )
            elif index > 0 and proposed:
                txs.append(
                    self._tx(
                        account,
                        private_key,
                        public_key,
                        "vote",
                        {"proposal": PROPOSAL, "approve": True},
                    )
                )
        return txs

    def _tx(
        self,
        account: str,
        private_key: bytes,
        public_key: bytes,
        method_name: str,
        args: dict[str, int | str | bool | list[int | str]],
    ) -> bytes:
        body = TransactionBody(
            self._chain_id,
            account,
            public_key,
            0,
            GOVERNANCE,
            1,
            method_name,
            args,
            self._from_height + EXPIRY_BLOCKS_MAX // 2,
        )
        return encode(Transaction(body, sign(self._suite, private_key, body, self.domain)))


def execute(engine: Engine, block: Block) -> bytes:
    """Run a committed block through the engine, as a node does; return the state root."""
    engine.execute_block(block.header.height, block.header.timestamp_ms, block.payload)
    return engine.commit()
