"""The `governance/` namespace: its keys, its genesis state and every read of it from outside.

Owns the layout of governance's state (contracts-spec §3, docs/governance.md): `committee`
{member: weight}, `params` (thresholds, expiry, validator minimum and warning, key-reset lock,
and the `consensus` and `mempool` parameter maps), `validators` (sorted by node id), `epoch`,
`pending_epoch`, `proposal_count`, `proposal/<n>`, `intervention_count`, `intervention/<n>`.
Other code reads governance's state only through the accessors here: identity
(`key_reset_lock_blocks`), the node and the simulator (`pending_epoch_config`,
`read_proposal`, `validator_members`).

Must never write: only the `governance` contract (governance.py, governance_kinds.py) changes
this state. Must never import another contract module (identity reads from here, and
governance imports identity). Reads go through `ctx.read_other` or a `StateReader`, so they
are metered alike and safe to call from any contract.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import Context, StateReader, contract_caller, read_record
from consortia.types.consensus import EpochConfig, Validator
from consortia.types.genesis import ConsensusParams, Genesis, MempoolParams

CONTRACT: Final = "governance"
CALLER: Final = contract_caller(CONTRACT)

COMMITTEE: Final = "committee"
PARAMS: Final = "params"
VALIDATORS: Final = "validators"
EPOCH: Final = "epoch"
PENDING_EPOCH: Final = "pending_epoch"
PROPOSAL_COUNT: Final = "proposal_count"
INTERVENTION_COUNT: Final = "intervention_count"

CONSENSUS_FIELDS: tuple[str, ...] = ConsensusParams.__struct_fields__
MEMPOOL_FIELDS: tuple[str, ...] = MempoolParams.__struct_fields__


def proposal_key(number: int) -> str:
    return f"proposal/{number}"


def intervention_key(number: int) -> str:
    return f"intervention/{number}"


def genesis_state(genesis: Genesis) -> dict[str, Any]:
    """Governance's state on a new chain, from the genesis rules and validators."""
    rules = genesis.governance
    validators = [
        {"node_id": v.node_id, "public_key": v.public_key, "voting_power": v.voting_power}
        for v in genesis.validators
    ]
    params = {
        "participation_threshold_percent": rules.participation_threshold_percent,
        "pass_threshold_percent": rules.pass_threshold_percent,
        "proposal_expiry_blocks": rules.proposal_expiry_blocks,
        "validators_min": rules.validators_min,
        "validators_warn": rules.validators_warn,
        "key_reset_lock_blocks": rules.key_reset_lock_blocks,
        "consensus": {f: getattr(genesis.consensus, f) for f in CONSENSUS_FIELDS},
        "mempool": {f: getattr(genesis.mempool, f) for f in MEMPOOL_FIELDS},
    }
    return {
        COMMITTEE: {seat.member: seat.weight for seat in rules.committee},
        PARAMS: params,
        VALIDATORS: sorted(validators, key=lambda v: v["node_id"]),
        EPOCH: 0,
        PENDING_EPOCH: None,
        PROPOSAL_COUNT: 0,
        INTERVENTION_COUNT: 0,
    }


# ---------------------------------------------------------------------- reads inside a call


def params(ctx: Context) -> dict[str, Any]:
    value: dict[str, Any] = ctx.read_other(CONTRACT, PARAMS)
    return value


def committee(ctx: Context) -> dict[str, int]:
    value: dict[str, int] = ctx.read_other(CONTRACT, COMMITTEE)
    return value


def validators(ctx: Context) -> list[dict[str, Any]]:
    return list(ctx.read_other(CONTRACT, VALIDATORS))


# ---------------------------------------------------------------------- reads from anywhere


def key_reset_lock_blocks(read: StateReader) -> int | None:
    """The key-reset lock window governance has set, or None when it has set none."""
    value = read(CONTRACT, PARAMS)
    if isinstance(value, dict):
        blocks = value.get("key_reset_lock_blocks")
        if isinstance(blocks, int) and not isinstance(blocks, bool) and blocks >= 1:
            return blocks
    return None


def validator_members(read: StateReader) -> dict[bytes, str | None]:
    """The validators governance has now (node id to the member running it, None where the
    proposal that added it named none; the genesis names every founding validator's)."""
    value = read(CONTRACT, VALIDATORS)
    entries = value if isinstance(value, list) else []
    return {
        bytes.fromhex(entry["node_id"]): entry.get("member")
        for entry in entries
        if isinstance(entry, dict)
    }


def read_proposal(read: StateReader, number: int) -> dict[str, Any] | None:
    """Proposal `number` as stored, or None when there is none."""
    return read_record(read, CONTRACT, proposal_key(number))


def pending_epoch_config(read: StateReader, current_epoch: int) -> EpochConfig | None:
    """The validator set the node hands over to after committing a block, if there is one.

    Returns the `governance/pending_epoch` set only when it is epoch `current_epoch + 1`: once
    the node runs that epoch, the same record no longer asks for anything.
    """
    pending = read(CONTRACT, PENDING_EPOCH)
    if not isinstance(pending, dict) or pending.get("epoch") != current_epoch + 1:
        return None
    validators = [
        Validator(
            node_id=bytes.fromhex(entry["node_id"]),
            public_key=bytes.fromhex(entry["public_key"]),
            voting_power=int(entry["voting_power"]),
        )
        for entry in pending["validators"]
    ]
    return EpochConfig(epoch=current_epoch + 1, validators=validators)
