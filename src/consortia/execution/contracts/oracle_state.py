"""The `oracle/` namespace: its keys, its records, its argument rules and every read of them.

Owns the layout of the oracle contract's state (docs/oracles.md):

    kind_names          sorted list of the fact kinds governance registered (at most 64)
    kind/<fact kind>    {"oracles": [account ids, sorted], "threshold": k}: k of n = len(oracles)
    fact/<fact kind>/<subject>
                        {"kind", "subject", "status": "pending"|"final", "value": the final
                         value or None, "final_height": int or None, "oracles": the oracles
                         whose attestations made it final ([] while pending),
                         "attestations": [{"oracle", "value", "height"}] in order (at most 64),
                         "conflicts": [conflict numbers]}
    conflict_count      int, the number the next conflict gets (numbered from 0)
    conflict/<n>        {"kind", "subject", "oracle", "value", "against": [the other values
                         attested or final], "fact_status", "height"}

and the rules of the arguments that name these things (fact kinds, subjects, values, oracle
sets and thresholds), so that governance's proposal checks and the contract's own checks are
the same code. Other code (governance, receivable, regulator, clients' tests) reads this state
only through the readers here.

Must never write state (only the `oracle` contract, oracle.py, changes it); never import a
contract module but identity_state and governance_state; never read but through a
`StateReader` (`ctx.read_other` inside a call), so reads are metered alike from any contract.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    ID_CHARACTERS,
    Context,
    ContractError,
    StateReader,
    arg_int,
    arg_list,
    arg_str,
    read_record,
)
from consortia.execution.contracts import identity_state

CONTRACT: Final = "oracle"

FACT_KINDS_MAX: Final = 64  # fact kinds registered at once
ORACLES_MAX: Final = 32  # n: oracles of one fact kind
ATTESTATIONS_MAX: Final = 64  # attestations kept per fact (oracles change over time)
FACT_KIND_LENGTH_MAX: Final = 32
SUBJECT_LENGTH_MAX: Final = 128
FACT_VALUE_LENGTH_MAX: Final = 256

# A fact kind: lowercase letters, digits and _ . -  (it is part of a state key).
FACT_KIND_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
# A subject (an order, an invoice, "CNY/USD:2024-05-31"): an id's characters and "/".
SUBJECT_CHARACTERS: Final = ID_CHARACTERS | frozenset("/")
# A value: printable ASCII (binary values travel as hex).
VALUE_CHARACTERS: Final = frozenset(chr(code) for code in range(0x20, 0x7F))

KIND_NAMES: Final = "kind_names"
CONFLICT_COUNT: Final = "conflict_count"
PENDING: Final = "pending"
FINAL: Final = "final"


def kind_key(fact_kind: str) -> str:
    return f"kind/{fact_kind}"


def fact_key(fact_kind: str, subject: str) -> str:
    return f"fact/{fact_kind}/{subject}"


def conflict_key(number: int) -> str:
    return f"conflict/{number}"


def new_fact(fact_kind: str, subject: str) -> dict[str, Any]:
    return {
        "kind": fact_kind,
        "subject": subject,
        "status": PENDING,
        "value": None,
        "final_height": None,
        "oracles": [],
        "attestations": [],
        "conflicts": [],
    }


# ---------------------------------------------------------------------- arguments


def fact_kind_arg(args: dict[str, Any], name: str = "fact_kind") -> str:
    value = arg_str(args, name, max_length=FACT_KIND_LENGTH_MAX)
    if not set(value) <= FACT_KIND_CHARACTERS:
        raise ContractError("bad_argument", f"{name} uses only a-z, 0-9 and _ . -")
    return value


def subject_arg(args: dict[str, Any], name: str = "subject") -> str:
    value = arg_str(args, name, max_length=SUBJECT_LENGTH_MAX)
    if not set(value) <= SUBJECT_CHARACTERS:
        raise ContractError("bad_argument", f"{name} uses only letters, digits and _ . : - /")
    return value


def value_arg(args: dict[str, Any], name: str = "value") -> str:
    value = arg_str(args, name, max_length=FACT_VALUE_LENGTH_MAX)
    if not set(value) <= VALUE_CHARACTERS:
        raise ContractError("bad_argument", f"{name} is printable ASCII (binary values as hex)")
    return value


def oracles_arg(ctx: Context, args: dict[str, Any]) -> list[str]:
    """The `oracles` argument: 1..ORACLES_MAX distinct accounts that exist and are not
    cancelled, sorted."""
    oracles = arg_list(args, "oracles", max_length=ORACLES_MAX)
    ctx.require(
        bool(oracles)
        and all(isinstance(oracle, str) and oracle for oracle in oracles)
        and len(set(oracles)) == len(oracles),
        "bad_argument",
        f"oracles is a list of 1 to {ORACLES_MAX} distinct account ids",
    )
    for oracle in oracles:
        status = identity_state.account_status(ctx, oracle)
        ctx.require(status is not None, "unknown_account", f"no account {oracle!r}")
        ctx.require(
            status != identity_state.CANCELLED, "account_cancelled", f"{oracle} is cancelled"
        )
    return sorted(oracles)


def kind_config_arg(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """A fact kind's registration: `fact_kind`, `oracles` and `threshold` k with 1 <= k <= n;
    a kind not registered yet must fit under FACT_KINDS_MAX."""
    fact_kind = fact_kind_arg(args)
    oracles = oracles_arg(ctx, args)
    threshold = arg_int(args, "threshold", minimum=1)
    ctx.require(
        threshold <= len(oracles),
        "bad_threshold",
        f"threshold {threshold} is more than the {len(oracles)} oracles named",
    )
    names = kind_names(ctx.read_other)
    ctx.require(
        fact_kind in names or len(names) < FACT_KINDS_MAX,
        "too_many_fact_kinds",
        f"at most {FACT_KINDS_MAX} fact kinds are registered",
    )
    return {"fact_kind": fact_kind, "oracles": oracles, "threshold": threshold}


def registered_kind_arg(ctx: Context, args: dict[str, Any]) -> str:
    """The `fact_kind` argument, naming a registered fact kind (else `unknown_fact_kind`)."""
    fact_kind = fact_kind_arg(args)
    ctx.require(
        read_kind(ctx.read_other, fact_kind) is not None,
        "unknown_fact_kind",
        f"no fact kind {fact_kind!r} is registered",
    )
    return fact_kind


# ---------------------------------------------------------------------- reads


def kind_names(read: StateReader) -> list[str]:
    value = read(CONTRACT, KIND_NAMES)
    return list(value) if isinstance(value, list) else []


def read_kind(read: StateReader, fact_kind: str) -> dict[str, Any] | None:
    """A registered fact kind's {"oracles", "threshold"}, or None."""
    return read_record(read, CONTRACT, kind_key(fact_kind))


def read_fact(read: StateReader, fact_kind: str, subject: str) -> dict[str, Any] | None:
    """The fact's record, final or pending, or None when nobody attested it."""
    return read_record(read, CONTRACT, fact_key(fact_kind, subject))


def final_value(read: StateReader, fact_kind: str, subject: str) -> str | None:
    """The value of a final fact; None while it is pending or unknown."""
    fact = read_fact(read, fact_kind, subject)
    if fact is None or fact["status"] != FINAL:
        return None
    return str(fact["value"])


def conflict_count(read: StateReader) -> int:
    value = read(CONTRACT, CONFLICT_COUNT)
    return value if isinstance(value, int) else 0


def read_conflict(read: StateReader, number: int) -> dict[str, Any] | None:
    return read_record(read, CONTRACT, conflict_key(number))
