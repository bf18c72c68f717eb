"""`governance` v1: the management committee of JR/T 0184-2020 §17, and every intervention.

Committee seats carry weights. A seat-holding member's accounts propose interventions and vote
(one vote per member, whichever of its accounts casts it). A proposal executes, automatically
inside the vote that makes it pass or through `execute`, when before its expiry height the
voted weight reaches the participation threshold and the yes weight the pass threshold of the
voted weight, both against the committee as it is at that moment. Each executed proposal is
recorded on chain as `intervention/<n>` with its votes. See docs/governance.md.

State (contracts-spec §3): `committee` {member: weight}, `params` (thresholds, expiry, validator
minimum and warning, key-reset lock, and the `consensus` and `mempool` parameter maps),
`validators` (sorted by node id), `epoch`, `pending_epoch`, `proposal_count`, `proposal/<n>`,
`intervention_count`, `intervention/<n>`.

This module must never change state except through a passed proposal (or a proposal's own
record and votes), never let the validator set fall below `validators_min`, never leave the
committee empty, never count a member twice, and never touch another contract's state except
through that contract's methods (`ctx.invoke`). `pending_epoch_config` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from consortia.execution.contract import (
    Context,
    Contract,
    ContractError,
    OutOfGasError,
    arg_int,
    arg_list,
    arg_str,
    method,
)
from consortia.execution.contracts.identity import acts_for
from consortia.execution.contracts.system import (
    PROTECTED_CONTRACTS,
    PROTOCOL_VERSION_MAX,
    StateReader,
    settled_protocol,
)
from consortia.types.consensus import EpochConfig, Validator
from consortia.types.genesis import ConsensusParams, Genesis, MempoolParams

SELF = "governance"
SELF_CALLER = "contract:governance"
ROLES = ("validator_operator", "member", "regulator", "observer")
NAME_LENGTH_MAX = 64
VALIDATORS_MAX = 1024
VOTING_POWER_MAX = 2**32
SEAT_WEIGHT_MAX = 2**32

# What each parameter may be set to by a proposal: (least, most), integers only.
GOVERNANCE_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "proposal_expiry_blocks": (10, 10_000_000),
    "validators_min": (1, VALIDATORS_MAX),
    "validators_warn": (1, VALIDATORS_MAX),
    "key_reset_lock_blocks": (1, 10_000_000),
}
CONSENSUS_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "round_timeout_ms": (50, 600_000),
    "round_timeout_ms_max": (50, 3_600_000),
    "timeout_backoff_percent": (100, 400),
    "block_payload_items_max": (1, 20_000),
    "block_bytes_max": (64 * 1024, 64 * 1024 * 1024),
    "reputation_window": (1, 1024),
}
MEMPOOL_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "transactions_max": (1, 10_000_000),
    "bytes_max": (1024 * 1024, 16 * 1024**3),
    "transaction_bytes_max": (1024, 4 * 1024 * 1024),
    "batch_transactions_max": (1, 100_000),
}


class Governance(Contract):
    name = "governance"
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
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
            "committee": {seat.member: seat.weight for seat in rules.committee},
            "params": params,
            "validators": sorted(validators, key=lambda v: v["node_id"]),
            "epoch": 0,
            "pending_epoch": None,
            "proposal_count": 0,
            "intervention_count": 0,
        }

    @method("propose")
    def propose(self, ctx: Context, args: dict[str, Any]) -> int:
        """Open a proposal: `kind` and that kind's arguments, checked now and at execution."""
        member, _ = _seat(ctx)
        kind_name = arg_str(args, "kind", max_length=NAME_LENGTH_MAX)
        kind = KINDS.get(kind_name)
        ctx.require(kind is not None, "unknown_kind", f"no proposal kind {kind_name!r}")
        assert kind is not None
        rest = {key: value for key, value in args.items() if key != "kind"}
        checked = kind.check(ctx, _shaped(ctx, rest, kind))
        number = int(ctx.get("proposal_count")) + 1
        expiry = ctx.height + int(_params(ctx)["proposal_expiry_blocks"])
        ctx.put("proposal_count", number)
        ctx.put(f"proposal/{number}", _new_proposal(ctx, kind_name, checked, member, expiry))
        ctx.emit("proposal_created", proposal=number, kind=kind_name, proposer=ctx.caller)
        return number

    @method("vote")
    def vote(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Cast this member's vote; execute the proposal if the vote makes it pass."""
        member, weight = _seat(ctx)
        number, proposal = _open_proposal(ctx, args)
        approve = args.get("approve")
        ctx.require(isinstance(approve, bool), "bad_argument", "approve must be true or false")
        voters = {vote["member"] for vote in proposal["votes"]}
        ctx.require(member not in voters, "already_voted", f"{member} has voted on {number}")
        ballot = {"member": member, "account": ctx.caller, "approve": approve, "weight": weight}
        proposal["votes"] = [*proposal["votes"], {**ballot, "height": ctx.height}]
        ctx.put(f"proposal/{number}", proposal)
        ctx.emit("vote_cast", proposal=number, member=member, approve=approve, weight=weight)
        refused = _execute_isolated(ctx, number) if _passes(ctx, proposal) else None
        status = ctx.get(f"proposal/{number}")["status"]
        return {"proposal": number, "status": status, "refused": refused}

    @method("execute")
    def execute(self, ctx: Context, args: dict[str, Any]) -> int:
        """Execute a passed, unexpired proposal (anyone may ask); returns the intervention."""
        number, proposal = _open_proposal(ctx, args)
        ctx.require(_passes(ctx, proposal), "threshold_not_met", f"{number} has not passed")
        return _apply(ctx, number, proposal)

    @method("apply")
    def apply(self, ctx: Context, args: dict[str, Any]) -> int:
        """Internal: `vote` executes through this call so a refused effect keeps the vote."""
        ctx.require(ctx.caller == SELF_CALLER, "not_authorised", "governance calls this itself")
        number, proposal = _open_proposal(ctx, args)
        ctx.require(_passes(ctx, proposal), "threshold_not_met", f"{number} has not passed")
        return _apply(ctx, number, proposal)

    @method("proposal")
    def proposal(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Read-only: a proposal, its tally against the committee now, and whether it expired."""
        number = arg_int(args, "proposal", minimum=1)
        record = ctx.get(f"proposal/{number}")
        ctx.require(record is not None, "unknown_proposal", f"no proposal {number}")
        yes, voted, total = _tally(ctx, record)
        expired = record["status"] == "open" and ctx.height >= record["expiry_height"]
        return {**record, "tally": {"yes": yes, "voted": voted, "total": total}, "expired": expired}


# ---------------------------------------------------------------------- pure helpers

CONSENSUS_FIELDS: tuple[str, ...] = ConsensusParams.__struct_fields__
MEMPOOL_FIELDS: tuple[str, ...] = MempoolParams.__struct_fields__


def thresholds_met(
    yes: int, voted: int, total: int, participation_percent: int, pass_percent: int
) -> bool:
    """voted/total >= participation% and yes/voted >= pass%, in integers."""
    return (
        voted > 0
        and voted * 100 >= participation_percent * total
        and yes * 100 >= pass_percent * voted
    )


def pending_epoch_config(read: StateReader, current_epoch: int) -> EpochConfig | None:
    """The validator set the node hands over to after committing a block, if there is one.

    Returns the `governance/pending_epoch` set only when it is epoch `current_epoch + 1`: once
    the node runs that epoch, the same record no longer asks for anything.
    """
    pending = read(SELF, "pending_epoch")
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


# ---------------------------------------------------------------------- proposals and votes


def _seat(ctx: Context) -> tuple[str, int]:
    """The member the caller acts for and its seat weight; refuses anyone without a seat.

    Only an active institution account of a member whose certificate stands acts for it
    (`identity.acts_for`): a member's customers are sponsored by it but never vote for it.
    """
    member = acts_for(ctx, ctx.caller)
    weight = _committee(ctx).get(member) if member is not None else None
    ctx.require(
        member is not None and weight is not None,
        "not_committee_member",
        f"{ctx.caller} does not act for a member with a committee seat",
    )
    assert member is not None and weight is not None
    return member, weight


def _new_proposal(
    ctx: Context, kind: str, args: dict[str, Any], member: str, expiry: int
) -> dict[str, Any]:
    return {
        "kind": kind,
        "args": args,
        "proposer": ctx.caller,
        "proposer_member": member,
        "votes": [],
        "status": "open",
        "created_height": ctx.height,
        "expiry_height": expiry,
    }


def _open_proposal(ctx: Context, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The proposal named by `args["proposal"]`, if it still takes votes and execution."""
    number = arg_int(args, "proposal", minimum=1)
    proposal = ctx.get(f"proposal/{number}")
    ctx.require(isinstance(proposal, dict), "unknown_proposal", f"no proposal {number}")
    assert isinstance(proposal, dict)
    ctx.require(proposal["status"] == "open", "proposal_closed", f"{number} is closed")
    ctx.require(
        ctx.height < proposal["expiry_height"],
        "proposal_expired",
        f"{number} expired at height {proposal['expiry_height']}",
    )
    return number, proposal


def _tally(ctx: Context, proposal: dict[str, Any]) -> tuple[int, int, int]:
    """(yes, voted, total) weight, by the committee's seats as they are now."""
    committee = _committee(ctx)
    weights = [(committee.get(v["member"], 0), v["approve"]) for v in proposal["votes"]]
    yes = sum(weight for weight, approve in weights if approve)
    return yes, sum(weight for weight, _ in weights), sum(committee.values())


def _passes(ctx: Context, proposal: dict[str, Any]) -> bool:
    params = _params(ctx)
    return thresholds_met(
        *_tally(ctx, proposal),
        int(params["participation_threshold_percent"]),
        int(params["pass_threshold_percent"]),
    )


def _execute_isolated(ctx: Context, number: int) -> str | None:
    """Execute inside a nested call: a refused effect changes nothing but keeps the vote.

    Returns the refusal's code, or None when the proposal executed.
    """
    mark = len(ctx.events)
    try:
        ctx.invoke(SELF, "apply", {"proposal": number})
    except OutOfGasError:
        raise
    except ContractError as error:
        del ctx.events[mark:]  # the nested call's events went with its writes
        ctx.emit("execution_refused", proposal=number, code=error.code, message=error.message)
        return error.code
    return None


def _apply(ctx: Context, number: int, proposal: dict[str, Any]) -> int:
    """Re-check the proposal against the state now, carry it out and record the intervention."""
    kind = KINDS[proposal["kind"]]
    args = kind.check(ctx, dict(proposal["args"]))
    kind.apply(ctx, args)
    committee = _committee(ctx)
    votes = [
        {"member": v["member"], "approve": v["approve"], "weight": committee.get(v["member"], 0)}
        for v in proposal["votes"]
    ]
    intervention = int(ctx.get("intervention_count")) + 1
    ctx.put("intervention_count", intervention)
    ctx.put(
        f"intervention/{intervention}",
        {
            "proposal": number,
            "kind": proposal["kind"],
            "args": args,
            "votes": votes,
            "height": ctx.height,
        },
    )
    executed = {"status": "executed", "executed_height": ctx.height, "intervention": intervention}
    ctx.put(f"proposal/{number}", {**proposal, **executed})
    ctx.emit(
        "intervention_executed", proposal=number, kind=proposal["kind"], intervention=intervention
    )
    return intervention


# ---------------------------------------------------------------------- proposal kinds


class _Check(Protocol):
    """Validate a kind's arguments against the state now; return them normalised."""

    def __call__(self, ctx: Context, args: dict[str, Any], /) -> dict[str, Any]: ...


class _Effect(Protocol):
    """Carry out a checked proposal."""

    def __call__(self, ctx: Context, args: dict[str, Any], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Kind:
    required: tuple[str, ...]
    check: _Check
    apply: _Effect
    optional: tuple[str, ...] = ()


def _shaped(ctx: Context, args: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """Refuse missing and unknown arguments."""
    for name in kind.required:
        ctx.require(name in args, "bad_argument", f"{name} is required")
    unknown = sorted(set(args) - set(kind.required) - set(kind.optional))
    ctx.require(not unknown, "bad_argument", f"unknown arguments {unknown}")
    return args


# Validators --------------------------------------------------------------


def _check_add_validator(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {
        "node_id": _hex(ctx, args, "node_id", (64,)),
        "public_key": _hex(ctx, args, "public_key", (64, 130)),
        "voting_power": _voting_power(args),
    }
    _validators_after(ctx, "add_validator", checked)
    return checked


def _check_remove_validator(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {"node_id": _hex(ctx, args, "node_id", (64,))}
    _validators_after(ctx, "remove_validator", checked)
    return checked


def _check_set_voting_power(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {"node_id": _hex(ctx, args, "node_id", (64,)), "voting_power": _voting_power(args)}
    _validators_after(ctx, "set_voting_power", checked)
    return checked


def _validators_after(ctx: Context, kind: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The validator set a validator proposal leads to; refuses an impossible change."""
    current: list[dict[str, Any]] = list(ctx.get("validators"))
    node_id = args["node_id"]
    present = any(v["node_id"] == node_id for v in current)
    if kind == "add_validator":
        ctx.require(not present, "validator_exists", f"{node_id} is a validator")
        keys = {v["public_key"] for v in current}
        ctx.require(args["public_key"] not in keys, "validator_exists", "the key is in use")
        ctx.require(len(current) < VALIDATORS_MAX, "validator_maximum", "too many validators")
        after = [*current, dict(args)]
    else:
        ctx.require(present, "unknown_validator", f"{node_id} is not a validator")
        after = [v for v in current if v["node_id"] != node_id]
        if kind == "set_voting_power":
            after.append({**_find(current, node_id), "voting_power": args["voting_power"]})
    minimum = int(_params(ctx)["validators_min"])
    ctx.require(
        len(after) >= minimum,
        "validator_minimum",
        f"the chain keeps at least {minimum} validators; this leaves {len(after)}",
    )
    return sorted(after, key=lambda v: v["node_id"])


def _find(validators: list[dict[str, Any]], node_id: str) -> dict[str, Any]:
    return next(v for v in validators if v["node_id"] == node_id)


def _effect_validators(kind: str) -> _Effect:
    def effect(ctx: Context, args: dict[str, Any]) -> None:
        _hand_over(ctx, _validators_after(ctx, kind, args))

    return effect


def _hand_over(ctx: Context, validators: list[dict[str, Any]]) -> None:
    """Record the new set and ask the node to start epoch `epoch` with it.

    Changes in one block share one epoch number (the last one wins); a change in a later
    block, after the node handed over to the previous one, asks for the next epoch.
    """
    pending = ctx.get("pending_epoch")
    same_block = isinstance(pending, dict) and pending["height"] == ctx.height
    epoch = int(pending["epoch"]) if same_block else int(ctx.get("epoch")) + 1
    ctx.put("validators", validators)
    ctx.put("epoch", epoch)
    ctx.put("pending_epoch", {"epoch": epoch, "validators": validators, "height": ctx.height})
    ctx.emit("validator_set_changed", epoch=epoch, count=len(validators))
    params = _params(ctx)
    if len(validators) <= int(params["validators_warn"]):
        ctx.emit(
            "validator_count_warning",
            count=len(validators),
            validators_min=params["validators_min"],
            validators_warn=params["validators_warn"],
        )


# Parameters --------------------------------------------------------------


def _check_param(group: str | None, bounds: dict[str, tuple[int, int]]) -> _Check:
    def check(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        name = arg_str(args, "name", max_length=NAME_LENGTH_MAX)
        ctx.require(name in bounds, "bad_argument", f"no parameter {name!r} here")
        least, most = bounds[name]
        value = arg_int(args, "value", minimum=least)
        ctx.require(value <= most, "bad_argument", f"{name} is at most {most}")
        _require_consistent(ctx, _params_after(ctx, group, name, value))
        return {"name": name, "value": value}

    return check


def _effect_param(group: str | None) -> _Effect:
    def effect(ctx: Context, args: dict[str, Any]) -> None:
        ctx.put("params", _params_after(ctx, group, args["name"], args["value"]))

    return effect


def _params_after(ctx: Context, group: str | None, name: str, value: int) -> dict[str, Any]:
    params = _params(ctx)
    if group is None:
        return {**params, name: value}
    return {**params, group: {**params[group], name: value}}


def _require_consistent(ctx: Context, params: dict[str, Any]) -> None:
    consensus, mempool = params["consensus"], params["mempool"]
    ctx.require(
        consensus["round_timeout_ms"] <= consensus["round_timeout_ms_max"],
        "bad_argument",
        "round_timeout_ms must not exceed round_timeout_ms_max",
    )
    ctx.require(
        mempool["transaction_bytes_max"] <= mempool["bytes_max"]
        and mempool["batch_transactions_max"] <= mempool["transactions_max"],
        "bad_argument",
        "a transaction or batch must fit the mempool",
    )
    ctx.require(
        params["validators_min"] <= params["validators_warn"],
        "bad_argument",
        "validators_warn must be at least validators_min",
    )
    count = len(ctx.get("validators"))
    ctx.require(
        params["validators_min"] <= count,
        "validator_minimum",
        f"the chain has {count} validators, fewer than that minimum",
    )


def _check_threshold(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {name: _percent(ctx, args, name) for name in ("participation_percent", "pass_percent")}


def _effect_threshold(ctx: Context, args: dict[str, Any]) -> None:
    params = {
        **_params(ctx),
        "participation_threshold_percent": args["participation_percent"],
        "pass_threshold_percent": args["pass_percent"],
    }
    ctx.put("params", params)


# Committee ---------------------------------------------------------------


def _check_committee(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    member = arg_str(args, "member", max_length=NAME_LENGTH_MAX)
    weight = arg_int(args, "weight", minimum=0)
    ctx.require(weight <= SEAT_WEIGHT_MAX, "bad_argument", f"weight is at most {SEAT_WEIGHT_MAX}")
    if weight:
        _require_member(ctx, member)
    else:
        ctx.require(member in _committee(ctx), "unknown_seat", f"{member} holds no seat")
    ctx.require(
        bool(_committee_after(ctx, member, weight)),
        "committee_empty",
        "the committee keeps at least one seat",
    )
    return {"member": member, "weight": weight}


def _committee_after(ctx: Context, member: str, weight: int) -> dict[str, int]:
    committee = {**_committee(ctx), member: weight}
    return {name: seat for name, seat in sorted(committee.items()) if seat > 0}


def _effect_committee(ctx: Context, args: dict[str, Any]) -> None:
    ctx.put("committee", _committee_after(ctx, args["member"], args["weight"]))


# Contracts and protocol (through `sys`) ------------------------------------


def _check_deploy(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = _contract(args)
    version = arg_int(args, "version", minimum=1)
    record = ctx.read_other("sys", f"contract/{contract}")
    ctx.require(record is None, "already_deployed", f"{contract} exists")
    return {"contract": contract, "version": version}


def _check_upgrade(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = _contract(args)
    version = arg_int(args, "version", minimum=1)
    active = int(_deployment(ctx, contract)["active_version"])
    ctx.require(version > active, "version_not_newer", f"{contract} runs version {active}")
    return {"contract": contract, "version": version}


def _check_freeze(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = _unprotected(ctx, _contract(args))
    _deployment(ctx, contract)
    if "until_height" not in args:
        return {"contract": contract}
    until = arg_int(args, "until_height", minimum=ctx.height)
    return {"contract": contract, "until_height": until}


def _check_unfreeze(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = _contract(args)
    status = _deployment(ctx, contract)["status"]
    ctx.require(status == "frozen", "not_frozen", f"{contract} is not frozen")
    return {"contract": contract}


def _check_retire(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = _unprotected(ctx, _contract(args))
    _deployment(ctx, contract)
    return {"contract": contract}


def _check_protocol(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    version = arg_int(args, "version", minimum=1)
    activation = arg_int(args, "activation_height", minimum=ctx.height + 1)
    ctx.require(version <= PROTOCOL_VERSION_MAX, "bad_argument", "version is too large")
    current = settled_protocol(ctx.read_other("sys", "protocol"), ctx.height)["version"]
    ctx.require(version > current, "version_not_newer", f"the chain runs version {current}")
    return {"version": version, "activation_height": activation}


def _deployment(ctx: Context, contract: str) -> dict[str, Any]:
    record = ctx.read_other("sys", f"contract/{contract}")
    ctx.require(isinstance(record, dict), "unknown_contract", f"no contract {contract!r}")
    assert isinstance(record, dict)
    ctx.require(record["status"] != "retired", "contract_retired", f"{contract} is retired")
    return record


def _unprotected(ctx: Context, contract: str) -> str:
    ctx.require(
        contract not in PROTECTED_CONTRACTS,
        "protected_contract",
        f"{contract} cannot be frozen or retired: nothing could undo it",
    )
    return contract


# Members and accounts (through `identity`) ---------------------------------


def _check_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account = arg_str(args, "account", max_length=NAME_LENGTH_MAX)
    record = ctx.read_other("identity", f"account/{account}")
    ctx.require(record is not None, "unknown_account", f"no account {account!r}")
    return {"account": account}


def _check_revoke(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"member": _require_member(ctx, arg_str(args, "member", max_length=NAME_LENGTH_MAX))}


def _check_add_member(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name = arg_str(args, "name", max_length=NAME_LENGTH_MAX)
    exists = ctx.read_other("identity", f"member/{name}") is not None
    ctx.require(not exists, "member_exists", f"{name} is a member")
    return {"name": name, "roles": _roles(ctx, args)}


def _check_set_roles(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    member = _require_member(ctx, arg_str(args, "member", max_length=NAME_LENGTH_MAX))
    return {"member": member, "roles": _roles(ctx, args)}


def _require_member(ctx: Context, member: str) -> str:
    known = ctx.read_other("identity", f"member/{member}") is not None
    ctx.require(known, "unknown_member", f"no member {member!r}")
    return member


def _roles(ctx: Context, args: dict[str, Any]) -> list[str]:
    roles = arg_list(args, "roles", max_length=len(ROLES))
    ctx.require(
        bool(roles) and all(role in ROLES for role in roles) and len(set(roles)) == len(roles),
        "bad_argument",
        f"roles are distinct values among {list(ROLES)}",
    )
    return [role for role in ROLES if role in roles]


def _forward(contract: str, method_name: str) -> _Effect:
    """An effect that is one call into another contract, with the checked arguments."""

    def effect(ctx: Context, args: dict[str, Any]) -> None:
        ctx.invoke(contract, method_name, args)

    return effect


# Argument helpers ----------------------------------------------------------


def _hex(ctx: Context, args: dict[str, Any], name: str, lengths: tuple[int, ...]) -> str:
    value = args.get(name)
    ctx.require(
        isinstance(value, str)
        and len(value) in lengths
        and all(char in "0123456789abcdef" for char in value),
        "bad_argument",
        f"{name} is lowercase hex of {' or '.join(str(n) for n in lengths)} digits",
    )
    assert isinstance(value, str)
    return value


def _voting_power(args: dict[str, Any]) -> int:
    power = arg_int(args, "voting_power", minimum=1)
    if power > VOTING_POWER_MAX:
        raise ContractError("bad_argument", f"voting_power is at most {VOTING_POWER_MAX}")
    return power


def _percent(ctx: Context, args: dict[str, Any], name: str) -> int:
    value = arg_int(args, name, minimum=1)
    ctx.require(value <= 100, "bad_argument", f"{name} is at most 100")
    return value


def _contract(args: dict[str, Any]) -> str:
    return arg_str(args, "contract", max_length=NAME_LENGTH_MAX)


def _params(ctx: Context) -> dict[str, Any]:
    params: dict[str, Any] = ctx.get("params")
    return params


def _committee(ctx: Context) -> dict[str, int]:
    committee: dict[str, int] = ctx.get("committee")
    return committee


KINDS: dict[str, Kind] = {
    "add_validator": Kind(
        ("node_id", "public_key", "voting_power"),
        _check_add_validator,
        _effect_validators("add_validator"),
    ),
    "remove_validator": Kind(
        ("node_id",), _check_remove_validator, _effect_validators("remove_validator")
    ),
    "set_voting_power": Kind(
        ("node_id", "voting_power"),
        _check_set_voting_power,
        _effect_validators("set_voting_power"),
    ),
    "set_consensus_param": Kind(
        ("name", "value"),
        _check_param("consensus", CONSENSUS_PARAM_BOUNDS),
        _effect_param("consensus"),
    ),
    "set_mempool_param": Kind(
        ("name", "value"), _check_param("mempool", MEMPOOL_PARAM_BOUNDS), _effect_param("mempool")
    ),
    "set_governance_param": Kind(
        ("name", "value"), _check_param(None, GOVERNANCE_PARAM_BOUNDS), _effect_param(None)
    ),
    "set_threshold": Kind(
        ("participation_percent", "pass_percent"), _check_threshold, _effect_threshold
    ),
    "change_committee": Kind(("member", "weight"), _check_committee, _effect_committee),
    "deploy_contract": Kind(("contract", "version"), _check_deploy, _forward("sys", "deploy")),
    "upgrade_contract": Kind(("contract", "version"), _check_upgrade, _forward("sys", "upgrade")),
    "freeze_contract": Kind(
        ("contract",), _check_freeze, _forward("sys", "freeze"), optional=("until_height",)
    ),
    "unfreeze_contract": Kind(("contract",), _check_unfreeze, _forward("sys", "unfreeze")),
    "retire_contract": Kind(("contract",), _check_retire, _forward("sys", "retire")),
    "upgrade_protocol": Kind(
        ("version", "activation_height"),
        _check_protocol,
        _forward("sys", "schedule_protocol_upgrade"),
    ),
    "freeze_account": Kind(("account",), _check_account, _forward("identity", "freeze_account")),
    "unfreeze_account": Kind(
        ("account",), _check_account, _forward("identity", "unfreeze_account")
    ),
    "revoke_certificate": Kind(
        ("member",), _check_revoke, _forward("identity", "revoke_certificate")
    ),
    "add_member": Kind(("name", "roles"), _check_add_member, _forward("identity", "add_member")),
    "set_roles": Kind(("member", "roles"), _check_set_roles, _forward("identity", "set_roles")),
}
