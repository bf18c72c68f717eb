"""`governance` v1: the management committee of JR/T 0184-2020 §17, and the proposal lifecycle.

Committee seats carry weights. A seat-holding member's accounts propose interventions and vote
(one vote per member, whichever of its accounts casts it). A proposal executes, automatically
inside the vote that makes it pass or through `execute`, when before its expiry height the
voted weight reaches the participation threshold and the yes weight the pass threshold of the
voted weight, both against the committee as it is at that moment. Each executed proposal is
recorded on chain as `intervention/<n>` with its votes. See docs/governance.md.

This module owns the lifecycle: who may propose and vote, the tally, expiry, execution (with a
refused effect keeping the vote) and the intervention record. What each kind checks and does
is governance_kinds.py; the state layout and every read of it from outside is
governance_state.py.

This module must never change state except through a passed proposal (or a proposal's own
record and votes), never count a member twice, never execute a proposal whose kind's check
does not pass against the state at that moment, and never touch another contract's state
except through that contract's methods (`ctx.invoke`). `thresholds_met` is pure.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import (
    Context,
    Contract,
    ContractError,
    OutOfGasError,
    arg_int,
    arg_str,
    method,
)
from consortia.execution.contracts import governance_state as state
from consortia.execution.contracts.governance_kinds import KINDS, NAME_LENGTH_MAX
from consortia.execution.contracts.identity_state import acts_for
from consortia.types.genesis import Genesis


class Governance(Contract):
    name = state.CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        return state.genesis_state(genesis)

    @method("propose")
    def propose(self, ctx: Context, args: dict[str, Any]) -> int:
        """Open a proposal: `kind` and that kind's arguments, checked now and at execution."""
        member, _ = _seat(ctx)
        kind_name = arg_str(args, "kind", max_length=NAME_LENGTH_MAX)
        kind = KINDS.get(kind_name)
        ctx.require(kind is not None, "unknown_kind", f"no proposal kind {kind_name!r}")
        assert kind is not None
        rest = {key: value for key, value in args.items() if key != "kind"}
        checked = kind.check(ctx, kind.shaped(ctx, rest))
        number = int(ctx.get(state.PROPOSAL_COUNT)) + 1
        expiry = ctx.height + int(state.params(ctx)["proposal_expiry_blocks"])
        ctx.put(state.PROPOSAL_COUNT, number)
        ctx.put(state.proposal_key(number), _new_proposal(ctx, kind_name, checked, member, expiry))
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
        ctx.put(state.proposal_key(number), proposal)
        ctx.emit("vote_cast", proposal=number, member=member, approve=approve, weight=weight)
        refused = _execute_isolated(ctx, number) if _passes(ctx, proposal) else None
        status = ctx.get(state.proposal_key(number))["status"]
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
        ctx.require(ctx.caller == state.CALLER, "not_authorised", "governance calls this itself")
        number, proposal = _open_proposal(ctx, args)
        ctx.require(_passes(ctx, proposal), "threshold_not_met", f"{number} has not passed")
        return _apply(ctx, number, proposal)

    @method("proposal")
    def proposal(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Read-only: a proposal, its tally against the committee now, and whether it expired."""
        number = arg_int(args, "proposal", minimum=1)
        record = ctx.get(state.proposal_key(number))
        ctx.require(record is not None, "unknown_proposal", f"no proposal {number}")
        yes, voted, total = _tally(ctx, record)
        expired = record["status"] == "open" and ctx.height >= record["expiry_height"]
        return {**record, "tally": {"yes": yes, "voted": voted, "total": total}, "expired": expired}


def thresholds_met(
    yes: int, voted: int, total: int, participation_percent: int, pass_percent: int
) -> bool:
    """voted/total >= participation% and yes/voted >= pass%, in integers."""
    return (
        voted > 0
        and voted * 100 >= participation_percent * total
        and yes * 100 >= pass_percent * voted
    )


# ---------------------------------------------------------------------- proposals and votes


def _seat(ctx: Context) -> tuple[str, int]:
    """The member the caller acts for and its seat weight; refuses anyone without a seat.

    Only an active institution account of a member whose certificate stands acts for it
    (`identity_state.acts_for`): a member's customers are sponsored by it but never vote.
    """
    member = acts_for(ctx, ctx.caller)
    weight = state.committee(ctx).get(member) if member is not None else None
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
    proposal = ctx.get(state.proposal_key(number))
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
    committee = state.committee(ctx)
    weights = [(committee.get(v["member"], 0), v["approve"]) for v in proposal["votes"]]
    yes = sum(weight for weight, approve in weights if approve)
    return yes, sum(weight for weight, _ in weights), sum(committee.values())


def _passes(ctx: Context, proposal: dict[str, Any]) -> bool:
    params = state.params(ctx)
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
        ctx.invoke(state.CONTRACT, "apply", {"proposal": number})
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
    committee = state.committee(ctx)
    votes = [
        {"member": v["member"], "approve": v["approve"], "weight": committee.get(v["member"], 0)}
        for v in proposal["votes"]
    ]
    intervention = int(ctx.get(state.INTERVENTION_COUNT)) + 1
    ctx.put(state.INTERVENTION_COUNT, intervention)
    ctx.put(
        state.intervention_key(intervention),
        {
            "proposal": number,
            "kind": proposal["kind"],
            "args": args,
            "votes": votes,
            "height": ctx.height,
        },
    )
    executed = {"status": "executed", "executed_height": ctx.height, "intervention": intervention}
    ctx.put(state.proposal_key(number), {**proposal, **executed})
    ctx.emit(
        "intervention_executed", proposal=number, kind=proposal["kind"], intervention=intervention
    )
    return intervention
