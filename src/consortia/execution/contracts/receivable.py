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
that contract's accessors, and never read a clock: maturity is a block height.

State (namespace `receivable/`):
    receivable/<id>   {"debtor", "holder" (the first holder), "amount" (face value),
                       "currency", "maturity_height", "grace_blocks", "documents_digest",
                       "status": issued|accepted|rejected|overdue|settled,
                       "issued_height", "parts": [part ids], "next_part": int}
    part/<part id>    {"receivable", "holder", "amount", "currency", "debtor",
                       "maturity_height", "status": held|financed|overdue|settled,
                       "offer": {"bank", "price", "height"}|None, and once financed
                       "financed_by", "price", "financed_height"}
Part ids are "<receivable id>#<n>", numbered from 0 in order of creation.
"""

from __future__ import annotations

from typing import Any, NoReturn

from consortia.execution.contract import (
    HEX_DIGITS,
    ID_CHARACTERS,
    Context,
    Contract,
    ContractError,
    arg_int,
    arg_str,
    method,
)
from consortia.execution.contracts import asset, identity_state

ID_LENGTH_MAX = 64
PART_ID_LENGTH_MAX = 80
DIGEST_HEX_MIN = 64
DIGEST_HEX_MAX = 128
# One repayment pays every part in one transaction, so it must fit a transaction's limits
# even when the regulator raises every alert on every payment: per part at most 6 events
# (the transfer, 4 alerts, part_paid), 40 x 6 + 1 <= 256 events, and well under the gas limit.
PARTS_MAX = 40
GRACE_BLOCKS_DEFAULT = 100
GRACE_BLOCKS_MAX = 100_000

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
        receivable_id = _receivable_id(args)
        record = _new_receivable(ctx, args)
        ctx.require(
            not ctx.has(f"receivable/{receivable_id}"),
            "duplicate_receivable",
            f"receivable {receivable_id!r} exists",
        )
        ctx.put(f"receivable/{receivable_id}", record)
        ctx.emit("issued", receivable=receivable_id, **_summary(record))

    @method("accept")
    def accept(self, ctx: Context, args: dict[str, Any]) -> str:
        """The named holder accepts: the whole face value becomes part "<id>#0"."""
        receivable_id, record = _pending(ctx, args)
        ctx.require(ctx.height < record["maturity_height"], "matured", "it has matured")
        part_id = f"{receivable_id}#0"
        ctx.put(f"part/{part_id}", _part(receivable_id, record, record["holder"], record["amount"]))
        record.update(status="accepted", parts=[part_id], next_part=1)
        ctx.put(f"receivable/{receivable_id}", record)
        ctx.emit("accepted", receivable=receivable_id, part=part_id, holder=record["holder"])
        return part_id

    @method("reject")
    def reject(self, ctx: Context, args: dict[str, Any]) -> None:
        """The named holder refuses a wrong receivable; it can never be accepted after."""
        receivable_id, record = _pending(ctx, args)
        record["status"] = "rejected"
        ctx.put(f"receivable/{receivable_id}", record)
        ctx.emit("rejected", receivable=receivable_id, holder=record["holder"])

    # ------------------------------------------------------------------ split and transfer

    @method("split_transfer")
    def split_transfer(self, ctx: Context, args: dict[str, Any]) -> str:
        """The holder passes `amount` of a part to `to`; the whole amount moves the part."""
        part_id, part = _held_by_signer(ctx, args)
        target = _counterparty(ctx, args, "to", part)
        amount = arg_int(args, "amount", minimum=1)
        ctx.require(amount <= part["amount"], "bad_amount", f"the part is {part['amount']}")
        if amount == part["amount"]:
            part.update(holder=target, offer=None)
            ctx.put(f"part/{part_id}", part)
            ctx.emit("part_transferred", part=part_id, source=ctx.origin, target=target)
            return part_id
        new_id = _add_part(ctx, part, target, amount)
        part.update(amount=part["amount"] - amount, offer=None)
        ctx.put(f"part/{part_id}", part)
        ctx.emit("part_split", part=part_id, new_part=new_id, amount=amount, target=target)
        return new_id

    # ------------------------------------------------------------------ finance

    @method("offer_finance")
    def offer_finance(self, ctx: Context, args: dict[str, Any]) -> None:
        """The holder offers the whole part to `bank` for `price` (1..amount)."""
        part_id, part = _held_by_signer(ctx, args)
        bank = _counterparty(ctx, args, "bank", part)
        price = arg_int(args, "price", minimum=1)
        ctx.require(price <= part["amount"], "bad_price", "the price exceeds the part's amount")
        part["offer"] = {"bank": bank, "price": price, "height": ctx.height}
        ctx.put(f"part/{part_id}", part)
        ctx.emit("finance_offered", part=part_id, holder=ctx.origin, bank=bank, price=price)

    @method("withdraw_offer")
    def withdraw_offer(self, ctx: Context, args: dict[str, Any]) -> None:
        part_id, part = _held_by_signer(ctx, args)
        ctx.require(part["offer"] is not None, "no_offer", f"{part_id} is not on offer")
        part["offer"] = None
        ctx.put(f"part/{part_id}", part)
        ctx.emit("offer_withdrawn", part=part_id, holder=ctx.origin)

    @method("finance")
    def finance(self, ctx: Context, args: dict[str, Any]) -> None:
        """The bank (the signer) takes the holder's offer: it pays `price` and holds the part."""
        part_id, part = _part_arg(ctx, args)
        _require_held(ctx, part_id, part)
        bank = arg_str(args, "bank", max_length=ID_LENGTH_MAX)
        price = arg_int(args, "price", minimum=1)
        ctx.require(bank == ctx.origin, "not_bank", "the bank signs its own financing")
        ctx.require(ctx.height < part["maturity_height"], "matured", f"{part_id} has matured")
        offer = part["offer"]
        ctx.require(
            offer is not None and offer["bank"] == bank and offer["price"] == price,
            "no_matching_offer",
            f"{part['holder']} has not offered {part_id} to {bank} for {price}",
        )
        seller = part["holder"]
        ctx.require(not _frozen(ctx, seller), "holder_frozen", f"{seller} is frozen")
        pay = {"to": seller, "amount": price, "currency": part["currency"]}
        ctx.invoke(asset.CONTRACT, "transfer", pay)
        part.update(holder=bank, status="financed", offer=None, financed_by=bank, price=price)
        part["financed_height"] = ctx.height
        ctx.put(f"part/{part_id}", part)
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
        paid = sum(_pay_part(ctx, part_id) for part_id in record["parts"])
        record["status"] = "settled"
        ctx.put(f"receivable/{receivable_id}", record)
        ctx.emit("settled", receivable=receivable_id, paid=paid)
        return paid

    @method("mark_overdue")
    def mark_overdue(self, ctx: Context, args: dict[str, Any]) -> None:
        """Anyone, once maturity plus the grace period has passed unpaid."""
        receivable_id, record = _receivable(ctx, args)
        _require_live(ctx, record)
        ctx.require(record["status"] != "overdue", "already_overdue", "it is already overdue")
        due = record["maturity_height"] + record["grace_blocks"]
        ctx.require(ctx.height > due, "not_overdue", f"it is not overdue before height {due + 1}")
        for part_id in record["parts"]:
            part = ctx.get(f"part/{part_id}")
            if part["status"] in OPEN:
                part.update(status="overdue", offer=None)
                ctx.put(f"part/{part_id}", part)
        record["status"] = "overdue"
        ctx.put(f"receivable/{receivable_id}", record)
        ctx.emit("overdue", receivable=receivable_id, debtor=record["debtor"])


# ---------------------------------------------------------------------- arguments


def _receivable_id(args: dict[str, Any]) -> str:
    value = arg_str(args, "receivable_id", max_length=ID_LENGTH_MAX)
    if not set(value) <= ID_CHARACTERS:
        _bad("receivable_id uses only letters, digits and _ . : -")
    return value


def _new_receivable(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    holder = arg_str(args, "holder", max_length=ID_LENGTH_MAX)
    amount = arg_int(args, "amount", minimum=1)
    ctx.require(amount <= asset.AMOUNT_MAX, "bad_argument", "amount is too large")
    currency = asset.arg_currency(ctx, args)
    maturity = arg_int(args, "maturity_height")
    grace = _grace(args)
    digest = arg_str(args, "documents_digest", max_length=DIGEST_HEX_MAX)
    _require_digest(digest)
    _require_account(ctx, holder)
    ctx.require(holder != ctx.origin, "holder_is_debtor", "the debtor cannot hold its own debt")
    ctx.require(maturity > ctx.height, "bad_maturity", "maturity must be a future height")
    ctx.require(
        asset.issuer(ctx, currency) is not None,
        "unknown_currency",
        f"no currency {currency}",
    )
    return {
        "debtor": ctx.origin,
        "holder": holder,
        "amount": amount,
        "currency": currency,
        "maturity_height": maturity,
        "grace_blocks": grace,
        "documents_digest": digest,
        "status": "issued",
        "issued_height": ctx.height,
        "parts": [],
        "next_part": 0,
    }


def _grace(args: dict[str, Any]) -> int:
    if args.get("grace_blocks") is None:
        return GRACE_BLOCKS_DEFAULT
    return arg_int(args, "grace_blocks", minimum=0, maximum=GRACE_BLOCKS_MAX)


def _require_digest(digest: str) -> None:
    if not (
        DIGEST_HEX_MIN <= len(digest) <= DIGEST_HEX_MAX
        and len(digest) % 2 == 0
        and set(digest) <= HEX_DIGITS
    ):
        _bad("documents_digest is 32 to 64 bytes of lowercase hex")


def _bad(message: str) -> NoReturn:
    raise ContractError("bad_argument", message)


# ---------------------------------------------------------------------- lookups and checks


def _receivable(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    receivable_id = arg_str(args, "receivable_id", max_length=ID_LENGTH_MAX)
    record = ctx.get(f"receivable/{receivable_id}")
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
    part = ctx.get(f"part/{part_id}")
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
    ctx.require(
        identity_state.account_exists(ctx, account),
        "unknown_account",
        f"no account {account!r}",
    )


def _frozen(ctx: Context, account: str) -> bool:
    """Frozen now: a frozen account's claims are not sold by a counterparty's action."""
    return identity_state.account_status(ctx, account) == identity_state.FROZEN


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
    record = ctx.get(f"receivable/{receivable_id}")
    ctx.require(len(record["parts"]) < PARTS_MAX, "too_many_parts", f"at most {PARTS_MAX} parts")
    part_id = f"{receivable_id}#{record['next_part']}"
    ctx.put(f"part/{part_id}", _part(receivable_id, record, holder, amount))
    record.update(parts=[*record["parts"], part_id], next_part=record["next_part"] + 1)
    ctx.put(f"receivable/{receivable_id}", record)
    return part_id


def _pay_part(ctx: Context, part_id: str) -> int:
    """Pay an open part's holder from the signer (the debtor); return the amount paid."""
    part = ctx.get(f"part/{part_id}")
    if part["status"] not in OPEN:
        return 0
    pay = {"to": part["holder"], "amount": part["amount"], "currency": part["currency"]}
    ctx.invoke(asset.CONTRACT, "transfer", pay)
    part.update(status="settled", offer=None)
    ctx.put(f"part/{part_id}", part)
    ctx.emit("part_paid", part=part_id, holder=part["holder"], amount=part["amount"])
    return int(part["amount"])


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("debtor", "holder", "amount", "currency", "maturity_height", "documents_digest")
    return {key: record[key] for key in keys}
