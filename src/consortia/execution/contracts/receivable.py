"""`receivable` v1: supply-chain finance on a core enterprise's promise to pay.

A core enterprise (the debtor) issues an electronic receivable to its tier-1 supplier, who
accepts it; holders pay their own suppliers with parts of it (`split_transfer`), sell a part
to a bank at a discount (`offer_finance` by the holder, then `finance` signed by the bank, who
pays the holder through `asset`), and at maturity the debtor repays every part's holder.
Unrepaid after maturity and a grace period, anyone may mark it overdue.

A frozen account cannot sign, so it neither trades nor repays; it still receives payments,
and a bank cannot take up an offer a frozen holder made before the freeze.

Invariants (checked by property tests): the parts of a receivable sum to its face value; each
part has exactly one holder; a part is financed at most once (the double-financing fraud);
money moves only through `asset.transfer`, from the signer (`ctx.origin`).

This module owns the `receivable/` namespace below. It must never move money itself (only
`asset` does), never use floats (amounts and prices are integers in minor units; discounts are
computed off-chain and passed as `price`), never read another contract's state but through
that contract's accessors, never read a clock (maturity is a block height), never change or
remove an anchored document, and never finance a part of a receivable whose kind requires a
fact that is not final with the required value.

Anchored documents: a receivable carries the digests of its trade documents (the invoice,
the contract, a delivery note), each named, under the chain's suite hash; the documents stay
off the chain. The debtor or the first holder may anchor one more later (`add_document`),
never change or remove one: anyone holding a file can check it against the chain
(`consortia anchor verify`).

Attested facts: governance may require, per receivable kind, a fact about the receivable's
order (its `order_ref`) confirmed by the oracles (the `oracle` contract) before any part of
it is financed: a "goods" receivable is financed only once k of n oracles attested its
delivery (`fact_required`, `fact_mismatch`).

Confidential terms and financing (docs/privacy.md, "Confidential records and receivables").
A receivable's commercial terms may be a sealed `vault` record (`terms` at issue: stored by
the debtor, readable by the debtor, the holder and always the regulator), and so may a
financing's price and discount rate (`financing_terms` instead of `price`: stored by the
holder, readable by the holder and the bank). The bank then pays the holder off the chain,
the holder's offer being its consent (receivable_finance.py). Governance may require both
for a receivable kind (`set_confidentiality`: `terms_required`, `terms_confidential`). The
public part is unchanged (parties, face value, parts and holders, status, who financed), so
every invariant holds as before and a part is still financed at most once. Governance may
also commit a kind's face value: then `amount` is None and the sealed terms hold it, the one
part passes only whole, and each holder confirms its off-chain repayment (`confirm_repaid`).

State (namespace `receivable/`; keys and shared rules in receivable_state.py):
    receivable/<id>   {"debtor", "holder" (the first holder), "amount" (face value, or None
                       where it is committed),
                       "currency", "maturity_height", "grace_blocks", "kind", "order_ref",
                       "documents": [{"name", "digest", "by", "height"}],
                       "status": issued|accepted|rejected|overdue|settled,
                       "issued_height", "parts": [part ids], "next_part": int,
                       optional "terms": {"record": vault record id, "commitment": hex}}
    part/<part id>    {"receivable", "holder", "amount", "currency", "debtor",
                       "maturity_height", "status": held|financed|overdue|settled,
                       "offer": {"bank", "price", "height"} or, confidential,
                       {"bank", "terms": vault record id, "height"}, or None; once financed
                       "financed_by", "financed_height" and "price", or, confidential,
                       "financing_terms": vault record id and "settlement": "off_chain"}
    requirements      {receivable kind: {"fact_kind", "value"}} (set by governance)
    confidentiality   {receivable kind: {"terms": "sealed", "face_value": "public"|
                       "committed"}} (set by governance)
    terms_use/<record id>  the receivable or part a sealed terms record serves
Part ids are "<receivable id>#<n>", numbered from 0 in order of creation.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import (
    Context,
    Contract,
    arg_int,
    arg_str,
    method,
)
from consortia.execution.contracts import asset, governance_state
from consortia.execution.contracts import receivable_finance as financing
from consortia.execution.contracts import receivable_issue as issuing
from consortia.execution.contracts import receivable_state as state
from consortia.execution.contracts.receivable_state import part_key, receivable_key

ID_LENGTH_MAX = 64
PART_ID_LENGTH_MAX = 80
# One repayment pays every part in one transaction, so it must fit a transaction's limits
# even when the regulator raises every alert on every payment: per part at most 6 events
# (the transfer, 4 alerts, part_paid), 40 x 6 + 1 <= 256 events, and well under the gas limit.
PARTS_MAX = 40

# A part in one of these states is owed money by the debtor.
OPEN = frozenset({"held", "financed", "overdue"})
# Why a part that is not "held" cannot be split, offered or financed.
NOT_HELD = {"financed": "already_financed", "settled": "already_settled", "overdue": "overdue"}


class Receivable(Contract):
    name = "receivable"
    version = 1

    # ------------------------------------------------------------------ issue and accept

    @method("issue")
    def issue(self, ctx: Context, args: dict[str, Any]) -> None:
        """The signer (the debtor) promises `amount` of `currency` at `maturity_height`."""
        receivable_id = issuing.receivable_id_arg(args)
        committed = state.face_value_committed(ctx.read_other, issuing.kind_arg(args))
        record = issuing.new_receivable(ctx, args, committed)
        ctx.require(
            not ctx.has(receivable_key(receivable_id)),
            "duplicate_receivable",
            f"receivable {receivable_id!r} exists",
        )
        if args.get("terms") is not None:
            parties = (record["debtor"], record["holder"])
            record["terms"] = state.sealed_terms(ctx, args, "terms", ctx.origin, parties)
            ctx.put(state.terms_use_key(record["terms"]["record"]), {"receivable": receivable_id})
        else:
            ctx.require(
                not state.terms_sealed(ctx.read_other, record["kind"]),
                "terms_required",
                f"the terms of a {record['kind']} receivable are sealed: give terms",
            )
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit("issued", receivable=receivable_id, **_summary(record))

    @method("accept")
    def accept(self, ctx: Context, args: dict[str, Any]) -> str:
        """The named holder accepts: the whole face value becomes part "<id>#0"."""
        receivable_id, record = _pending(ctx, args)
        ctx.require(ctx.height < record["maturity_height"], "matured", "it has matured")
        part_id = f"{receivable_id}#0"
        ctx.put(part_key(part_id), _part(receivable_id, record, record["holder"], record["amount"]))
        record.update(status="accepted", parts=[part_id], next_part=1)
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit("accepted", receivable=receivable_id, part=part_id, holder=record["holder"])
        return part_id

    @method("add_document")
    def add_document(self, ctx: Context, args: dict[str, Any]) -> None:
        """The debtor or the first holder anchors one more document ("<name>:<digest>"), while
        the receivable is issued or accepted; anchored documents are never changed."""
        receivable_id, record = _receivable(ctx, args)
        ctx.require(
            ctx.origin in (record["debtor"], record["holder"]),
            "not_party",
            "only the debtor or the first holder anchors its documents",
        )
        status = record["status"]
        ctx.require(status in ("issued", "accepted"), "not_active", f"it is {status}")
        name, digest = state.document_arg(args.get("document"))
        ctx.require(
            all(entry["name"] != name for entry in record["documents"]),
            "duplicate_document",
            f"{receivable_id} already anchors a document named {name!r}",
        )
        ctx.require(
            len(record["documents"]) < state.DOCUMENTS_MAX,
            "too_many_documents",
            f"a receivable anchors at most {state.DOCUMENTS_MAX} documents",
        )
        state.anchored(record, name, digest, ctx.origin, ctx.height)
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit(
            "document_anchored",
            receivable=receivable_id,
            document=name,
            digest=digest,
            by=ctx.origin,
        )

    @method("reject")
    def reject(self, ctx: Context, args: dict[str, Any]) -> None:
        """The named holder refuses a wrong receivable; it can never be accepted after."""
        receivable_id, record = _pending(ctx, args)
        record["status"] = "rejected"
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit("rejected", receivable=receivable_id, holder=record["holder"])

    # ------------------------------------------------------------------ split and transfer

    @method("split_transfer")
    def split_transfer(self, ctx: Context, args: dict[str, Any]) -> str:
        """The holder passes `amount` of a part to `to`; the whole amount moves the part."""
        part_id, part = _held_by_signer(ctx, args)
        target = _counterparty(ctx, args, "to", part)
        amount = financing.transfer_amount_arg(ctx, args, part)
        if amount == part["amount"]:
            part.update(holder=target, offer=None)
            ctx.put(part_key(part_id), part)
            ctx.emit("part_transferred", part=part_id, source=ctx.origin, target=target)
            return part_id
        assert amount is not None  # only a part of a public amount is split
        new_id = _add_part(ctx, part, target, amount)
        part.update(amount=part["amount"] - amount, offer=None)
        ctx.put(part_key(part_id), part)
        ctx.emit("part_split", part=part_id, new_part=new_id, amount=amount, target=target)
        return new_id

    # ------------------------------------------------------------------ finance

    @method("offer_finance")
    def offer_finance(self, ctx: Context, args: dict[str, Any]) -> None:
        """The holder offers the whole part to `bank` for `price` (1..amount), or, confidential,
        at the price sealed in `financing_terms` (a vault record it stored for itself and the
        bank)."""
        part_id, part = _held_by_signer(ctx, args)
        bank = _counterparty(ctx, args, "bank", part)
        if args.get("financing_terms") is not None:
            parties = (ctx.origin, bank)
            terms = state.sealed_terms(ctx, args, "financing_terms", ctx.origin, parties)
            part["offer"] = {"bank": bank, "terms": terms["record"], "height": ctx.height}
            ctx.put(part_key(part_id), part)
            ctx.emit(
                "finance_offered", part=part_id, holder=ctx.origin, bank=bank, terms=terms["record"]
            )
            return
        financing.require_public_price(ctx, part)
        price = arg_int(args, "price", minimum=1)
        ctx.require(price <= part["amount"], "bad_price", "the price exceeds the part's amount")
        part["offer"] = {"bank": bank, "price": price, "height": ctx.height}
        ctx.put(part_key(part_id), part)
        ctx.emit("finance_offered", part=part_id, holder=ctx.origin, bank=bank, price=price)

    @method("withdraw_offer")
    def withdraw_offer(self, ctx: Context, args: dict[str, Any]) -> None:
        part_id, part = _held_by_signer(ctx, args)
        ctx.require(part["offer"] is not None, "no_offer", f"{part_id} is not on offer")
        part["offer"] = None
        ctx.put(part_key(part_id), part)
        ctx.emit("offer_withdrawn", part=part_id, holder=ctx.origin)

    @method("finance")
    def finance(self, ctx: Context, args: dict[str, Any]) -> None:
        """The bank (the signer) takes the holder's offer: it pays `price` and holds the part.
        Confidential (`financing_terms` instead of `price`): it takes the part at the sealed
        price and pays the holder off the chain."""
        part_id, part = _part_arg(ctx, args)
        _require_held(ctx, part_id, part)
        bank = arg_str(args, "bank", max_length=ID_LENGTH_MAX)
        if args.get("financing_terms") is not None:
            financing.finance_confidentially(ctx, part_id, part, bank, args)
            return
        financing.require_public_price(ctx, part)
        price = arg_int(args, "price", minimum=1)
        seller = financing.taking_offer(ctx, part_id, part, bank, field="price", value=price)
        pay = {"to": seller, "amount": price, "currency": part["currency"]}
        ctx.invoke(asset.CONTRACT, "transfer", pay)
        part.update(holder=bank, status="financed", offer=None, financed_by=bank, price=price)
        part["financed_height"] = ctx.height
        ctx.put(part_key(part_id), part)
        ctx.emit("financed", part=part_id, seller=seller, bank=bank, price=price)

    # ------------------------------------------------------------------ maturity

    @method("repay")
    def repay(self, ctx: Context, args: dict[str, Any]) -> int:
        """The debtor pays every open part's holder its amount; returns the total paid."""
        receivable_id, record = _receivable(ctx, args)
        ctx.require(ctx.origin == record["debtor"], "not_debtor", "only the debtor repays")
        _require_live(ctx, record)
        ctx.require(
            ctx.height >= record["maturity_height"],
            "not_matured",
            f"it matures at height {record['maturity_height']}",
        )
        ctx.require(
            record["amount"] is not None,
            "repaid_off_chain",
            "its face value is committed: each holder confirms its repayment (confirm_repaid)",
        )
        paid = sum(_pay_part(ctx, part_id) for part_id in record["parts"])
        record["status"] = "settled"
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit("settled", receivable=receivable_id, paid=paid)
        return paid

    @method("confirm_repaid")
    def confirm_repaid(self, ctx: Context, args: dict[str, Any]) -> None:
        """The holder of a part of a receivable whose face value is committed confirms, at or
        after maturity, that the debtor repaid it off the chain; the last confirmation settles
        the receivable."""
        part_id, part = _part_arg(ctx, args)
        financing.confirm_repaid(ctx, part_id, part)

    @method("mark_overdue")
    def mark_overdue(self, ctx: Context, args: dict[str, Any]) -> None:
        """Anyone, once maturity plus the grace period has passed unpaid."""
        receivable_id, record = _receivable(ctx, args)
        _require_live(ctx, record)
        ctx.require(record["status"] != "overdue", "already_overdue", "it is already overdue")
        due = record["maturity_height"] + record["grace_blocks"]
        ctx.require(ctx.height > due, "not_overdue", f"it is not overdue before height {due + 1}")
        for part_id in record["parts"]:
            part = ctx.get(part_key(part_id))
            if part["status"] in OPEN:
                part.update(status="overdue", offer=None)
                ctx.put(part_key(part_id), part)
        record["status"] = "overdue"
        ctx.put(receivable_key(receivable_id), record)
        ctx.emit("overdue", receivable=receivable_id, debtor=record["debtor"])

    # ------------------------------------------------------------------ governance

    @method("set_confidentiality")
    def set_confidentiality(self, ctx: Context, args: dict[str, Any]) -> None:
        """Seal, for `receivable_kind`, its terms and financing prices (`terms`: "sealed"), or
        leave them to the parties again ("optional"); governance only."""
        ctx.require(
            ctx.caller == governance_state.CALLER,
            "not_authorised",
            "only a passed governance proposal sets a confidentiality policy",
        )
        checked = state.confidentiality_arg(ctx, args)
        kind = checked["receivable_kind"]
        policies = state.read_confidentiality(ctx.read_other)
        policies.pop(kind, None)
        if checked["terms"] == state.SEALED:
            policies[kind] = {"terms": state.SEALED, "face_value": checked["face_value"]}
        ctx.put(state.CONFIDENTIALITY, dict(sorted(policies.items())))
        ctx.emit("confidentiality_set", **checked)

    @method("set_requirement")
    def set_requirement(self, ctx: Context, args: dict[str, Any]) -> None:
        """Require, for `receivable_kind`, the fact `fact_kind` about the order final with
        `value` before financing (governance only)."""
        _require_governance(ctx)
        checked = state.requirement_arg(ctx, args)
        kind = checked.pop("receivable_kind")
        requirements = {**state.read_requirements(ctx.read_other), kind: checked}
        ctx.put(state.REQUIREMENTS, dict(sorted(requirements.items())))
        ctx.emit("requirement_set", receivable_kind=kind, **checked)

    @method("clear_requirement")
    def clear_requirement(self, ctx: Context, args: dict[str, Any]) -> None:
        """Finance `receivable_kind` without a fact again (governance only)."""
        _require_governance(ctx)
        kind = state.required_kind_arg(ctx, args)
        requirements = state.read_requirements(ctx.read_other)
        del requirements[kind]
        ctx.put(state.REQUIREMENTS, requirements)
        ctx.emit("requirement_cleared", receivable_kind=kind)


# ---------------------------------------------------------------------- lookups and checks


def _receivable(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    receivable_id = arg_str(args, "receivable_id", max_length=ID_LENGTH_MAX)
    record = ctx.get(receivable_key(receivable_id))
    ctx.require(record is not None, "unknown_receivable", f"no receivable {receivable_id!r}")
    return receivable_id, record


def _pending(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An issued receivable awaiting the signer's answer (the signer is its named holder)."""
    receivable_id, record = _receivable(ctx, args)
    ctx.require(ctx.origin == record["holder"], "not_holder", "only the named holder answers")
    ctx.require(record["status"] == "issued", "not_pending", f"it is {record['status']}")
    return receivable_id, record


def _require_live(ctx: Context, record: dict[str, Any]) -> None:
    """Accepted or overdue: parts exist and money is owed."""
    status = record["status"]
    ctx.require(status != "settled", "already_settled", "it is settled")
    ctx.require(status in ("accepted", "overdue"), "not_active", f"it is {status}")


def _part_arg(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    part_id = arg_str(args, "part_id", max_length=PART_ID_LENGTH_MAX)
    part = ctx.get(part_key(part_id))
    ctx.require(part is not None, "unknown_part", f"no part {part_id!r}")
    return part_id, part


def _require_held(ctx: Context, part_id: str, part: dict[str, Any]) -> None:
    status = part["status"]
    ctx.require(status == "held", NOT_HELD.get(status, "not_held"), f"{part_id} is {status}")


def _held_by_signer(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A part the signer holds, free to split, transfer or offer (held, not matured)."""
    part_id, part = _part_arg(ctx, args)
    ctx.require(part["holder"] == ctx.origin, "not_holder", f"{part_id} is not yours")
    _require_held(ctx, part_id, part)
    ctx.require(ctx.height < part["maturity_height"], "matured", f"{part_id} has matured")
    return part_id, part


def _counterparty(ctx: Context, args: dict[str, Any], name: str, part: dict[str, Any]) -> str:
    """The account a part would pass to: it exists and is neither the holder nor the debtor."""
    account = arg_str(args, name, max_length=ID_LENGTH_MAX)
    _require_account(ctx, account)
    ctx.require(account != part["holder"], "self_transfer", f"{account} already holds it")
    ctx.require(account != part["debtor"], "holder_is_debtor", "the debtor cannot hold its debt")
    return account


def _require_account(ctx: Context, account: str) -> None:
    issuing.require_account(ctx, account)


def _require_governance(ctx: Context) -> None:
    ctx.require(
        ctx.caller == governance_state.CALLER,
        "not_authorised",
        "only a passed governance proposal sets financing requirements",
    )


# ---------------------------------------------------------------------- parts


def _part(receivable_id: str, record: dict[str, Any], holder: str, amount: int) -> dict[str, Any]:
    return {
        "receivable": receivable_id,
        "holder": holder,
        "amount": amount,
        "currency": record["currency"],
        "debtor": record["debtor"],
        "maturity_height": record["maturity_height"],
        "status": "held",
        "offer": None,
    }


def _add_part(ctx: Context, source: dict[str, Any], holder: str, amount: int) -> str:
    """A new part of `source`'s receivable; the caller reduces `source` by `amount`."""
    receivable_id = source["receivable"]
    record = ctx.get(receivable_key(receivable_id))
    ctx.require(len(record["parts"]) < PARTS_MAX, "too_many_parts", f"at most {PARTS_MAX} parts")
    part_id = f"{receivable_id}#{record['next_part']}"
    ctx.put(part_key(part_id), _part(receivable_id, record, holder, amount))
    record.update(parts=[*record["parts"], part_id], next_part=record["next_part"] + 1)
    ctx.put(receivable_key(receivable_id), record)
    return part_id


def _pay_part(ctx: Context, part_id: str) -> int:
    """Pay an open part's holder from the signer (the debtor); return the amount paid."""
    part = ctx.get(part_key(part_id))
    if part["status"] not in OPEN:
        return 0
    pay = {"to": part["holder"], "amount": part["amount"], "currency": part["currency"]}
    ctx.invoke(asset.CONTRACT, "transfer", pay)
    part.update(status="settled", offer=None)
    ctx.put(part_key(part_id), part)
    ctx.emit("part_paid", part=part_id, holder=part["holder"], amount=part["amount"])
    return int(part["amount"])


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("debtor", "holder", "amount", "currency", "maturity_height", "kind", "order_ref")
    documents = [f"{entry['name']}:{entry['digest']}" for entry in record["documents"]]
    summary = {**{key: record[key] for key in keys}, "documents": documents}
    if "terms" in record:
        summary["terms"] = record["terms"]["record"]
    return summary
