"""`oracle` v1: facts from outside the ledger, usable once k of n registered oracles agree.

Governance registers, per kind of fact ("delivery", "tax_verified", "fx_fixing"), the oracle
accounts that may attest it and a threshold k of their number n (`set_kind`, `remove_kind`:
only "contract:governance", after a passed proposal). A registered oracle signs `attest`
(kind, subject, value); the fact (kind, subject) becomes final with a value once k distinct
oracles registered for the kind *now* attested that same value as their first attestation of
the fact. Later attestations never change a final fact.

An attestation that disputes a fact is a conflict: it brings a value other than those already
attested, or contradicts the final value, or contradicts the same oracle's earlier word. It is
kept in the fact, numbered under `conflict/<n>` and emitted as `attestation_conflict`, where
the regulator lists it (`regulator.list_conflicts`). An
oracle's own second attestation of the same value counts once (`already_attested`); an oracle
governance removed no longer attests, and its earlier attestations stop counting towards a
pending fact.

This module owns the `oracle/` namespace (layout and readers in oracle_state.py). It must
never count an oracle twice for one fact, never make a fact final with fewer than k of the
kind's current oracles, never change a final fact's value, never keep more than the bounds of
oracle_state.py, and never read a clock.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import Context, Contract, method
from consortia.execution.contracts import governance_state
from consortia.execution.contracts import oracle_state as state


class Oracle(Contract):
    name = state.CONTRACT
    version = 1

    # ------------------------------------------------------------------ governance

    @method("set_kind")
    def set_kind(self, ctx: Context, args: dict[str, Any]) -> None:
        """Register a fact kind, or replace its oracles and threshold (governance only)."""
        _require_governance(ctx)
        config = state.kind_config_arg(ctx, args)
        fact_kind = config["fact_kind"]
        names = state.kind_names(ctx.read_other)
        if fact_kind not in names:
            ctx.put(state.KIND_NAMES, sorted([*names, fact_kind]))
        record = {"oracles": config["oracles"], "threshold": config["threshold"]}
        ctx.put(state.kind_key(fact_kind), record)
        ctx.emit("fact_kind_set", kind=fact_kind, **record)

    @method("remove_kind")
    def remove_kind(self, ctx: Context, args: dict[str, Any]) -> None:
        """Stop attestations of a kind (governance only); its facts stay as they are."""
        _require_governance(ctx)
        fact_kind = state.registered_kind_arg(ctx, args)
        names = state.kind_names(ctx.read_other)
        ctx.put(state.KIND_NAMES, [name for name in names if name != fact_kind])
        ctx.delete(state.kind_key(fact_kind))
        ctx.emit("fact_kind_removed", kind=fact_kind)

    # ------------------------------------------------------------------ attestations

    @method("attest")
    def attest(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """A registered oracle (the signer) attests `value` for (`fact_kind`, `subject`).

        Returns {"status", "value", "count", "threshold"}: the fact's status after it, its
        final value (None while pending), and how many current oracles back this value."""
        fact_kind = state.fact_kind_arg(args)
        subject = state.subject_arg(args)
        value = state.value_arg(args)
        config = state.read_kind(ctx.read_other, fact_kind)
        if config is None:
            ctx.fail("unknown_fact_kind", f"no fact kind {fact_kind!r}")
        oracle = ctx.caller
        oracles = config["oracles"]
        ctx.require(oracle in oracles, "not_oracle", f"{oracle} is no oracle of {fact_kind}")
        key = state.fact_key(fact_kind, subject)
        fact = ctx.get(key) or state.new_fact(fact_kind, subject)
        attestations = fact["attestations"]
        ctx.require(
            not any(a["oracle"] == oracle and a["value"] == value for a in attestations),
            "already_attested",
            f"{oracle} already attested this value of {fact_kind} {subject}",
        )
        ctx.require(
            len(attestations) < state.ATTESTATIONS_MAX,
            "too_many_attestations",
            f"a fact keeps at most {state.ATTESTATIONS_MAX} attestations",
        )
        against = _conflict(fact, oracle, value)
        attestations.append({"oracle": oracle, "value": value, "height": ctx.height})
        if against:
            _record_conflict(ctx, fact, oracle, value, against)
        backers = _backers(attestations, oracles, value)
        threshold = int(config["threshold"])
        ctx.emit(
            "attested",
            kind=fact_kind,
            subject=subject,
            oracle=oracle,
            value=value,
            count=len(backers),
            threshold=threshold,
        )
        if fact["status"] == state.PENDING and len(backers) >= threshold:
            fact.update(status=state.FINAL, value=value, final_height=ctx.height, oracles=backers)
            ctx.emit("fact_final", kind=fact_kind, subject=subject, value=value, oracles=backers)
        ctx.put(key, fact)
        return {
            "status": fact["status"],
            "value": fact["value"],
            "count": len(backers),
            "threshold": threshold,
        }


# ---------------------------------------------------------------------- helpers


def _require_governance(ctx: Context) -> None:
    ctx.require(
        ctx.caller == governance_state.CALLER,
        "not_authorised",
        "only a passed governance proposal changes the oracles",
    )


def _conflict(fact: dict[str, Any], oracle: str, value: str) -> list[str]:
    """The values `oracle`'s attestation of `value` conflicts with ([] for none).

    It is a conflict when the fact already holds another value and this attestation either
    brings a value nobody attested before, or contradicts the final value, or contradicts
    what the same oracle said before. An attestation that joins a value already disputed is
    kept in the fact but not counted as a new conflict."""
    attested = {a["value"] for a in fact["attestations"]}
    final = fact["value"] if fact["status"] == state.FINAL else None
    others = sorted((attested | ({final} if final is not None else set())) - {value})
    if not others:
        return []
    own = {a["value"] for a in fact["attestations"] if a["oracle"] == oracle}
    new_value = value not in attested
    against_final = final is not None and value != final
    changed = bool(own - {value})
    return others if new_value or against_final or changed else []


def _backers(attestations: list[dict[str, Any]], oracles: list[str], value: str) -> list[str]:
    """The current oracles whose first attestation of the fact is `value`, sorted."""
    first: dict[str, str] = {}
    for attestation in attestations:
        first.setdefault(attestation["oracle"], attestation["value"])
    return sorted(oracle for oracle in oracles if first.get(oracle) == value)


def _record_conflict(
    ctx: Context, fact: dict[str, Any], oracle: str, value: str, against: list[str]
) -> None:
    number = state.conflict_count(ctx.read_other)
    conflict = {
        "kind": fact["kind"],
        "subject": fact["subject"],
        "oracle": oracle,
        "value": value,
        "against": against,
        "fact_status": fact["status"],
        "height": ctx.height,
    }
    ctx.put(state.conflict_key(number), conflict)
    ctx.put(state.CONFLICT_COUNT, number + 1)
    fact["conflicts"] = [*fact["conflicts"], number]
    ctx.emit("attestation_conflict", n=number, **conflict)
