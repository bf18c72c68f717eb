"""The proposal kinds of `governance`: what each may ask for, how it is checked, what it does.

Owns `KINDS` (kind name -> `Kind`), each kind's argument shape, its `check` (run when proposed
and again at execution, against the state at that moment; returns the normalised arguments)
and its `effect`, and the bounds a parameter change must stay within. docs/governance.md
lists the kinds; adding one is a `Kind` in `KINDS` and a row there.

Must never: run an effect that its check did not just pass (the lifecycle in governance.py
calls check, then effect, in one call); let the validator set fall below `validators_min` or
above `VALIDATORS_MAX`; leave the committee empty; change another contract's state except
through that contract's methods (`ctx.invoke`, see `forward`: `sys`, `identity`, `oracle`'s
fact kinds, `receivable`'s financing requirements and confidentiality policies, the
`regulator`'s escrow key); read another contract's state except through that contract's
accessors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from consortia.execution.contract import (
    HASH_HEX_LENGTH,
    PAYLOAD_ITEM_SIZE_MAX,
    PUBLIC_KEY_HEX_LENGTHS,
    VALIDATORS_MAX,
    Context,
    arg_hex,
    arg_int,
    arg_str,
)
from consortia.execution.contracts import governance_state as state
from consortia.execution.contracts import (
    identity_state,
    oracle_state,
    receivable_state,
    regulator_state,
    system,
)
from consortia.types.genesis import (
    BACKOFF_PERCENT_MAX,
    BACKOFF_PERCENT_MIN,
    mempool_limits_fit,
    round_timeouts_ordered,
)

NAME_LENGTH_MAX = 64  # of a kind's or a parameter's name
VOTING_POWER_MAX = 2**32
SEAT_WEIGHT_MAX = 2**32
NODE_ID_HEX_LENGTHS = (HASH_HEX_LENGTH,)
SYS = system.CONTRACT
IDENTITY = identity_state.CONTRACT
ORACLE = oracle_state.CONTRACT
RECEIVABLE = receivable_state.CONTRACT
REGULATOR = regulator_state.CONTRACT

# What each parameter may be set to by a proposal: (least, most), integers only. A policy on
# changes, within (never beyond) what the genesis schema and the replica's `Params` accept, so
# no passed proposal can hold a value a node would refuse (a test checks every bound).
# A longer window than this is a genesis choice (at most REPUTATION_WINDOW_MAX), not a change.
REPUTATION_WINDOW_CHANGE_MAX = 1024
GOVERNANCE_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "proposal_expiry_blocks": (10, 10_000_000),
    "validators_min": (1, VALIDATORS_MAX),
    "validators_warn": (1, VALIDATORS_MAX),
    "key_reset_lock_blocks": (1, 10_000_000),
}
CONSENSUS_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "round_timeout_ms": (50, 600_000),
    "round_timeout_ms_min": (10, 600_000),
    "round_timeout_ms_max": (50, 3_600_000),
    "timeout_backoff_percent": (BACKOFF_PERCENT_MIN, BACKOFF_PERCENT_MAX),
    "block_payload_items_max": (1, 20_000),
    "block_bytes_max": (64 * 1024, 64 * 1024 * 1024),
    "reputation_window": (1, REPUTATION_WINDOW_CHANGE_MAX),
}
MEMPOOL_PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "transactions_max": (1, 10_000_000),
    "bytes_max": (1024 * 1024, 16 * 1024**3),
    "transaction_bytes_max": (1024, PAYLOAD_ITEM_SIZE_MAX),
    "batch_transactions_max": (1, 100_000),
}


class Check(Protocol):
    """Validate a kind's arguments against the state now; return them normalised."""

    def __call__(self, ctx: Context, args: dict[str, Any], /) -> dict[str, Any]: ...


class Effect(Protocol):
    """Carry out a checked proposal."""

    def __call__(self, ctx: Context, args: dict[str, Any], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Kind:
    required: tuple[str, ...]
    check: Check
    apply: Effect
    optional: tuple[str, ...] = ()

    def shaped(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Refuse missing and unknown arguments."""
        for name in self.required:
            ctx.require(name in args, "bad_argument", f"{name} is required")
        unknown = sorted(set(args) - set(self.required) - set(self.optional))
        ctx.require(not unknown, "bad_argument", f"unknown arguments {unknown}")
        return args


def forward(contract: str, method_name: str) -> Effect:
    """An effect that is one call into another contract, with the checked arguments."""

    def effect(ctx: Context, args: dict[str, Any]) -> None:
        ctx.invoke(contract, method_name, args)

    return effect


# Validators --------------------------------------------------------------


def _check_add_validator(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {
        "node_id": arg_hex(args, "node_id", NODE_ID_HEX_LENGTHS),
        "public_key": arg_hex(args, "public_key", PUBLIC_KEY_HEX_LENGTHS),
        "voting_power": _voting_power(args),
    }
    if "member" in args:  # the institution that runs the node: its revocation cuts the node off
        member, record = identity_state.load_member(ctx, args)
        ctx.require(
            not record["certificate_revoked"],
            "member_revoked",
            f"the certificate of member {member!r} is revoked",
        )
        checked["member"] = member
    _validators_after(ctx, "add_validator", checked)
    return checked


def _check_remove_validator(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {"node_id": arg_hex(args, "node_id", NODE_ID_HEX_LENGTHS)}
    _validators_after(ctx, "remove_validator", checked)
    return checked


def _check_set_voting_power(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    checked = {
        "node_id": arg_hex(args, "node_id", NODE_ID_HEX_LENGTHS),
        "voting_power": _voting_power(args),
    }
    _validators_after(ctx, "set_voting_power", checked)
    return checked


def _voting_power(args: dict[str, Any]) -> int:
    return arg_int(args, "voting_power", minimum=1, maximum=VOTING_POWER_MAX)


def _validators_after(ctx: Context, kind: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The validator set a validator proposal leads to; refuses an impossible change."""
    current = state.validators(ctx)
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
            previous = next(v for v in current if v["node_id"] == node_id)
            after.append({**previous, "voting_power": args["voting_power"]})
    minimum = int(state.params(ctx)["validators_min"])
    ctx.require(
        len(after) >= minimum,
        "validator_minimum",
        f"the chain keeps at least {minimum} validators; this leaves {len(after)}",
    )
    return sorted(after, key=lambda v: v["node_id"])


def _effect_validators(kind: str) -> Effect:
    def effect(ctx: Context, args: dict[str, Any]) -> None:
        _hand_over(ctx, _validators_after(ctx, kind, args))

    return effect


def _hand_over(ctx: Context, validators: list[dict[str, Any]]) -> None:
    """Record the new set and ask the node to start epoch `epoch` with it.

    Changes in one block share one epoch number (the last one wins); a change in a later
    block, after the node handed over to the previous one, asks for the next epoch.
    """
    pending = ctx.get(state.PENDING_EPOCH)
    same_block = isinstance(pending, dict) and pending["height"] == ctx.height
    epoch = int(pending["epoch"]) if same_block else int(ctx.get(state.EPOCH)) + 1
    ctx.put(state.VALIDATORS, validators)
    ctx.put(state.EPOCH, epoch)
    ctx.put(state.PENDING_EPOCH, {"epoch": epoch, "validators": validators, "height": ctx.height})
    ctx.emit("validator_set_changed", epoch=epoch, count=len(validators))
    params = state.params(ctx)
    if len(validators) <= int(params["validators_warn"]):
        ctx.emit(
            "validator_count_warning",
            count=len(validators),
            validators_min=params["validators_min"],
            validators_warn=params["validators_warn"],
        )


# Parameters --------------------------------------------------------------


def _check_param(group: str | None, bounds: dict[str, tuple[int, int]]) -> Check:
    def check(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        name = arg_str(args, "name", max_length=NAME_LENGTH_MAX)
        ctx.require(name in bounds, "bad_argument", f"no parameter {name!r} here")
        least, most = bounds[name]
        value = arg_int(args, "value", minimum=least)
        ctx.require(value <= most, "bad_argument", f"{name} is at most {most}")
        _require_consistent(ctx, _params_after(ctx, group, name, value))
        return {"name": name, "value": value}

    return check


def _effect_param(group: str | None) -> Effect:
    def effect(ctx: Context, args: dict[str, Any]) -> None:
        ctx.put(state.PARAMS, _params_after(ctx, group, args["name"], args["value"]))

    return effect


def _params_after(ctx: Context, group: str | None, name: str, value: int) -> dict[str, Any]:
    params = state.params(ctx)
    if group is None:
        return {**params, name: value}
    return {**params, group: {**params[group], name: value}}


def _require_consistent(ctx: Context, params: dict[str, Any]) -> None:
    consensus, mempool = params["consensus"], params["mempool"]
    ctx.require(
        round_timeouts_ordered(
            consensus["round_timeout_ms_min"],
            consensus["round_timeout_ms"],
            consensus["round_timeout_ms_max"],
        ),
        "bad_argument",
        "round timeouts must be ordered: min <= round_timeout_ms <= max",
    )
    ctx.require(
        mempool_limits_fit(
            mempool["transaction_bytes_max"],
            mempool["bytes_max"],
            mempool["batch_transactions_max"],
            mempool["transactions_max"],
        ),
        "bad_argument",
        "a transaction or batch must fit the mempool",
    )
    ctx.require(
        params["validators_min"] <= params["validators_warn"],
        "bad_argument",
        "validators_warn must be at least validators_min",
    )
    count = len(state.validators(ctx))
    ctx.require(
        params["validators_min"] <= count,
        "validator_minimum",
        f"the chain has {count} validators, fewer than that minimum",
    )


def _check_threshold(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    del ctx
    return {
        name: arg_int(args, name, minimum=1, maximum=100)
        for name in ("participation_percent", "pass_percent")
    }


def _effect_threshold(ctx: Context, args: dict[str, Any]) -> None:
    params = {
        **state.params(ctx),
        "participation_threshold_percent": args["participation_percent"],
        "pass_threshold_percent": args["pass_percent"],
    }
    ctx.put(state.PARAMS, params)


# Committee ---------------------------------------------------------------


def _check_committee(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    member = arg_str(args, "member", max_length=identity_state.MEMBER_NAME_LENGTH_MAX)
    weight = arg_int(args, "weight", minimum=0, maximum=SEAT_WEIGHT_MAX)
    if weight:
        _require_member(ctx, member)
    else:
        ctx.require(member in state.committee(ctx), "unknown_seat", f"{member} holds no seat")
    ctx.require(
        bool(_committee_after(ctx, member, weight)),
        "committee_empty",
        "the committee keeps at least one seat",
    )
    return {"member": member, "weight": weight}


def _committee_after(ctx: Context, member: str, weight: int) -> dict[str, int]:
    committee = {**state.committee(ctx), member: weight}
    return {name: seat for name, seat in sorted(committee.items()) if seat > 0}


def _effect_committee(ctx: Context, args: dict[str, Any]) -> None:
    ctx.put(state.COMMITTEE, _committee_after(ctx, args["member"], args["weight"]))


# Contracts and protocol (through `sys`) ------------------------------------


def _check_deploy(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = system.contract_name_arg(args)
    version = arg_int(args, "version", minimum=1)
    ctx.require(system.deployment(ctx, contract) is None, "already_deployed", f"{contract} exists")
    return {"contract": contract, "version": version}


def _check_upgrade(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = system.contract_name_arg(args)
    version = arg_int(args, "version", minimum=1)
    active = int(system.live_deployment(ctx, contract)["active_version"])
    ctx.require(version > active, "version_not_newer", f"{contract} runs version {active}")
    return {"contract": contract, "version": version}


def _check_freeze(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = system.require_unprotected(ctx, system.contract_name_arg(args))
    system.live_deployment(ctx, contract)
    if "until_height" not in args:
        return {"contract": contract}
    until = arg_int(args, "until_height", minimum=ctx.height)
    return {"contract": contract, "until_height": until}


def _check_unfreeze(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = system.contract_name_arg(args)
    status = system.live_deployment(ctx, contract)["status"]
    ctx.require(status == system.FROZEN, "not_frozen", f"{contract} is not frozen")
    return {"contract": contract}


def _check_retire(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    contract = system.require_unprotected(ctx, system.contract_name_arg(args))
    system.live_deployment(ctx, contract)
    return {"contract": contract}


def _check_protocol(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    version = arg_int(args, "version", minimum=1)
    activation = arg_int(args, "activation_height", minimum=ctx.height + 1)
    ctx.require(version <= system.PROTOCOL_VERSION_MAX, "bad_argument", "version is too large")
    current = system.protocol_in_force(ctx)["version"]
    ctx.require(version > current, "version_not_newer", f"the chain runs version {current}")
    return {"version": version, "activation_height": activation}


# Members and accounts (through `identity`) ---------------------------------


def _check_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account = arg_str(args, "account", max_length=identity_state.ACCOUNT_ID_LENGTH_MAX)
    exists = identity_state.account_exists(ctx, account)
    ctx.require(exists, "unknown_account", f"no account {account!r}")
    return {"account": account}


def _check_revoke(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"member": identity_state.load_member(ctx, args)[0]}


def _check_add_member(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name = arg_str(args, "name", max_length=identity_state.MEMBER_NAME_LENGTH_MAX)
    exists = identity_state.member_exists(ctx, name)
    ctx.require(not exists, "member_exists", f"{name} is a member")
    return {"name": name, "roles": identity_state.roles_arg(ctx, args)}


def _check_set_roles(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    member = identity_state.load_member(ctx, args)[0]
    return {"member": member, "roles": identity_state.roles_arg(ctx, args)}


def _require_member(ctx: Context, member: str) -> None:
    known = identity_state.member_exists(ctx, member)
    ctx.require(known, "unknown_member", f"no member {member!r}")


# Oracles and financing requirements (through `oracle` and `receivable`) --------


def _check_oracle_kind(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return oracle_state.kind_config_arg(ctx, args)


def _check_remove_oracle_kind(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    fact_kind = oracle_state.registered_kind_arg(ctx, args)
    needing = receivable_state.kinds_requiring(ctx.read_other, fact_kind)
    ctx.require(
        not needing,
        "fact_kind_in_use",
        f"financing of {', '.join(needing)} receivables requires {fact_kind}: clear that first",
    )
    return {"fact_kind": fact_kind}


def _check_requirement(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return receivable_state.requirement_arg(ctx, args)


def _check_clear_requirement(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"receivable_kind": receivable_state.required_kind_arg(ctx, args)}


# Confidential records (through `regulator` and `receivable`) ----------------------


def _check_escrow_key(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return regulator_state.escrow_key_arg(ctx, args)


def _check_confidentiality(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return receivable_state.confidentiality_arg(ctx, args)


KINDS: dict[str, Kind] = {
    "add_validator": Kind(
        ("node_id", "public_key", "voting_power"),
        _check_add_validator,
        _effect_validators("add_validator"),
        optional=("member",),
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
    "deploy_contract": Kind(("contract", "version"), _check_deploy, forward(SYS, "deploy")),
    "upgrade_contract": Kind(("contract", "version"), _check_upgrade, forward(SYS, "upgrade")),
    "freeze_contract": Kind(
        ("contract",), _check_freeze, forward(SYS, "freeze"), optional=("until_height",)
    ),
    "unfreeze_contract": Kind(("contract",), _check_unfreeze, forward(SYS, "unfreeze")),
    "retire_contract": Kind(("contract",), _check_retire, forward(SYS, "retire")),
    "upgrade_protocol": Kind(
        ("version", "activation_height"),
        _check_protocol,
        forward(SYS, "schedule_protocol_upgrade"),
    ),
    "freeze_account": Kind(("account",), _check_account, forward(IDENTITY, "freeze_account")),
    "unfreeze_account": Kind(("account",), _check_account, forward(IDENTITY, "unfreeze_account")),
    "revoke_certificate": Kind(("member",), _check_revoke, forward(IDENTITY, "revoke_certificate")),
    "add_member": Kind(("name", "roles"), _check_add_member, forward(IDENTITY, "add_member")),
    "set_roles": Kind(("member", "roles"), _check_set_roles, forward(IDENTITY, "set_roles")),
    "set_oracle_kind": Kind(
        ("fact_kind", "oracles", "threshold"), _check_oracle_kind, forward(ORACLE, "set_kind")
    ),
    "remove_oracle_kind": Kind(
        ("fact_kind",), _check_remove_oracle_kind, forward(ORACLE, "remove_kind")
    ),
    "set_financing_requirement": Kind(
        ("receivable_kind", "fact_kind", "value"),
        _check_requirement,
        forward(RECEIVABLE, "set_requirement"),
    ),
    "clear_financing_requirement": Kind(
        ("receivable_kind",), _check_clear_requirement, forward(RECEIVABLE, "clear_requirement")
    ),
    "set_escrow_key": Kind(
        ("public_key",), _check_escrow_key, forward(REGULATOR, "set_escrow_key")
    ),
    "set_confidentiality_policy": Kind(
        ("receivable_kind", "terms"),
        _check_confidentiality,
        forward(RECEIVABLE, "set_confidentiality"),
        optional=("face_value",),
    ),
}
