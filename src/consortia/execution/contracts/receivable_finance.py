"""How a part of a receivable is financed: the checks of a bank taking the holder's offer, and
the confidential paths (financing, and a face value committed in sealed terms). Called only
by receivable.py's methods, with the receivable contract's own context (it writes in the
`receivable/` namespace, nowhere else).

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
refused (`terms_confidential`). Where it also commits the face value, the receivable has no
amount on the chain (`amount` None; the sealed terms hold it): its one part is never split,
only handed over whole (`face_value_committed`), it is financed confidentially, and it is
repaid off the chain, each holder confirming its part (`confirm_repaid`); the chain still
holds one record, one holder and one status per part, so it is financed at most once.

Must never move money on the confidential path, put a sealed record's contents in state or an
event, or finance a part whose kind requires a fact that is not final with the required
value.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import Context, arg_int, arg_str
from consortia.execution.contracts import asset, identity_state
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
    # Two offers may name one record (it is checked free when offered); only one is taken.
    ctx.require(
        not ctx.has(state.terms_use_key(record_id)),
        "terms_in_use",
        f"{record_id} already financed another part",
    )
    ctx.put(state.terms_use_key(record_id), {"part": part_id})
    part.update(holder=bank, status="financed", offer=None, financed_by=bank)
    part.update(financing_terms=record_id, settlement="off_chain", financed_height=ctx.height)
    ctx.put(part_key(part_id), part)
    ctx.emit("financed", part=part_id, seller=seller, bank=bank, terms=record_id)


def require_public_price(ctx: Context, part: dict[str, Any]) -> None:
    """A price on the chain is refused where governance seals the kind's financing prices (no
    read of the receivable's record when no kind has a policy), and for a part whose face
    value is committed whatever the policy says now (governance may have lifted it since)."""
    if state.read_confidentiality(ctx.read_other):
        record = ctx.get(receivable_key(part["receivable"]))
        ctx.require(
            not state.terms_sealed(ctx.read_other, record["kind"]),
            "terms_confidential",
            f"financing a {record['kind']} receivable is confidential: give financing_terms",
        )
    ctx.require(
        part["amount"] is not None,
        "face_value_committed",
        "the part's face value is committed: it is financed with financing_terms only",
    )


def frozen(ctx: Context, account: str) -> bool:
    """Frozen now: a frozen account's claims are not sold by a counterparty's action."""
    return identity_state.account_status(ctx, account) == identity_state.FROZEN


def face_value_arg(ctx: Context, args: dict[str, Any], committed: bool) -> int | None:
    """`amount`, the face value (1..AMOUNT_MAX), or None where it is committed: then no
    `amount` may be given, and the sealed `terms` are required (they hold it)."""
    if not committed:
        amount = arg_int(args, "amount", minimum=1)
        ctx.require(amount <= asset.AMOUNT_MAX, "bad_argument", "amount is too large")
        return amount
    ctx.require(
        args.get("amount") is None,
        "face_value_committed",
        "this kind's face value is committed: it goes in the sealed terms, not in amount",
    )
    ctx.require(args.get("terms") is not None, "terms_required", "give the sealed terms")
    return None


def transfer_amount_arg(ctx: Context, args: dict[str, Any], part: dict[str, Any]) -> int | None:
    """The amount a holder passes on (1..the part's amount); None for a part whose amount is
    committed, which only passes whole (`face_value_committed` if an amount is given)."""
    if part["amount"] is None:
        ctx.require(
            args.get("amount") is None,
            "face_value_committed",
            "the part's amount is committed: it is handed over whole, without an amount",
        )
        return None
    amount = arg_int(args, "amount", minimum=1)
    ctx.require(amount <= part["amount"], "bad_amount", f"the part is {part['amount']}")
    return amount


def confirm_repaid(ctx: Context, part_id: str, part: dict[str, Any]) -> None:
    """The holder confirms the off-chain repayment of a part whose amount is committed."""
    ctx.require(part["holder"] == ctx.origin, "not_holder", f"{part_id} is not yours")
    ctx.require(part["amount"] is None, "not_committed", "a public face value is repaid with repay")
    ctx.require(part["status"] != "settled", "already_settled", f"{part_id} is settled")
    ctx.require(
        ctx.height >= part["maturity_height"],
        "not_matured",
        f"it matures at height {part['maturity_height']}",
    )
    part.update(status="settled", offer=None, repayment="off_chain")
    ctx.put(part_key(part_id), part)
    ctx.emit("repayment_confirmed", part=part_id, holder=ctx.origin)
    record = ctx.get(receivable_key(part["receivable"]))
    parts = [ctx.get(part_key(other)) for other in record["parts"]]
    if all(other["status"] == "settled" for other in parts):
        record["status"] = "settled"
        ctx.put(receivable_key(part["receivable"]), record)
        ctx.emit("settled", receivable=part["receivable"], paid=None)
