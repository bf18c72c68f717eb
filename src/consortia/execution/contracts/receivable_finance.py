"""How a part of a receivable is financed: the checks of a bank taking the holder's offer, and
the confidential path. Called only by receivable.py's methods, with the receivable contract's
own context (it writes the part in the `receivable/` namespace, nowhere else).

Two paths finance a part, and both leave one record with one holder and one status, so a part
is financed at most once whichever path is taken (`already_financed`):

- public: the offer names a `price`; the bank's `finance` pays it to the holder through
  `asset.transfer` and takes the part (`price` on the part, in the events);
- confidential: the offer names `financing_terms`, a sealed `vault` record the holder stored
  for itself and the bank (the regulator always reads it), holding the price, the discount
  rate and anything else agreed. The holder's offer is its consent to sell at the sealed
  price; the bank's `finance` naming the same record takes the part and records
  `settlement: "off_chain"`: the bank pays the holder through its own payment system,
  reconciled against the sealed price, because a payment through `asset` would publish the
  price. Each sealed record finances one part (`terms_use/<record>`).

Where governance seals a receivable kind's terms (`confidentiality`), a public price is
refused (`terms_confidential`). Must never move money on the confidential path, put a
sealed record's contents in state or an event, or finance a part whose kind requires a fact
that is not final with the required value.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import Context, arg_str
from consortia.execution.contracts import identity_state
from consortia.execution.contracts import receivable_state as state
from consortia.execution.contracts.receivable_state import part_key, receivable_key

ID_LENGTH_MAX = 64


def require_facts(ctx: Context, part: dict[str, Any]) -> None:
    """The facts governance requires of the part's receivable kind are final (no read of the
    receivable's record when no kind has a requirement)."""
    requirements = state.read_requirements(ctx.read_other)
    if not requirements:
        return
    record = ctx.get(receivable_key(part["receivable"]))
    refusal = state.missing_fact(ctx.read_other, record, requirements)
    if refusal is not None:
        raise refusal


def taking_offer(
    ctx: Context, part_id: str, part: dict[str, Any], bank: str, *, field: str, value: Any
) -> str:
    """The checks of a bank taking the holder's offer whose `field` is `value` (its price, or
    its sealed terms); returns the seller."""
    ctx.require(bank == ctx.origin, "not_bank", "the bank signs its own financing")
    ctx.require(ctx.height < part["maturity_height"], "matured", f"{part_id} has matured")
    offer = part["offer"]
    ctx.require(
        offer is not None and offer["bank"] == bank and offer.get(field) == value,
        "no_matching_offer",
        f"{part['holder']} has not offered {part_id} to {bank} with that {field}",
    )
    seller = str(part["holder"])
    ctx.require(not frozen(ctx, seller), "holder_frozen", f"{seller} is frozen")
    require_facts(ctx, part)
    return seller


def finance_confidentially(
    ctx: Context, part_id: str, part: dict[str, Any], bank: str, args: dict[str, Any]
) -> None:
    """The bank takes the part at the price sealed in the offer's financing terms; it pays the
    holder off the chain (no `asset` transfer: that would publish the price)."""
    record_id = arg_str(args, "financing_terms", max_length=ID_LENGTH_MAX)
    seller = taking_offer(ctx, part_id, part, bank, field="terms", value=record_id)
    ctx.put(state.terms_use_key(record_id), {"part": part_id})
    part.update(holder=bank, status="financed", offer=None, financed_by=bank)
    part.update(financing_terms=record_id, settlement="off_chain", financed_height=ctx.height)
    ctx.put(part_key(part_id), part)
    ctx.emit("financed", part=part_id, seller=seller, bank=bank, terms=record_id)


def require_public_price(ctx: Context, part: dict[str, Any]) -> None:
    """A price on the chain is refused where governance seals the kind's financing prices (no
    read of the receivable's record when no kind has a policy)."""
    if not state.read_confidentiality(ctx.read_other):
        return
    record = ctx.get(receivable_key(part["receivable"]))
    ctx.require(
        not state.terms_sealed(ctx.read_other, record["kind"]),
        "terms_confidential",
        f"financing a {record['kind']} receivable is confidential: give financing_terms",
    )


def frozen(ctx: Context, account: str) -> bool:
    """Frozen now: a frozen account's claims are not sold by a counterparty's action."""
    return identity_state.account_status(ctx, account) == identity_state.FROZEN
