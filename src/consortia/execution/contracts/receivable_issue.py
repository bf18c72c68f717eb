"""The record of a receivable being issued: its arguments and their checks.

Called only by receivable.py's `issue` (with the receivable contract's own context); owns the
rules of the issue arguments (the id, the holder, the face value or, where governance commits
it, its absence, the currency, maturity, grace, documents, kind and order) and the record they
make. Must never write state (the contract stores the record), never accept a float or an
amount beyond `asset.AMOUNT_MAX`, never let the debtor hold its own debt.
"""

from __future__ import annotations

from typing import Any, NoReturn

from consortia.execution.contract import ID_CHARACTERS, Context, ContractError, arg_int, arg_str
from consortia.execution.contracts import asset, identity_state
from consortia.execution.contracts import receivable_state as state
from consortia.execution.contracts.receivable_finance import face_value_arg

ID_LENGTH_MAX = 64
GRACE_BLOCKS_DEFAULT = 100
GRACE_BLOCKS_MAX = 100_000


def require_account(ctx: Context, account: str) -> None:
    ctx.require(
        identity_state.account_exists(ctx, account),
        "unknown_account",
        f"no account {account!r}",
    )


def receivable_id_arg(args: dict[str, Any]) -> str:
    value = arg_str(args, "receivable_id", max_length=ID_LENGTH_MAX)
    if not set(value) <= ID_CHARACTERS:
        _bad("receivable_id uses only letters, digits and _ . : -")
    return value


def kind_arg(args: dict[str, Any]) -> str:
    return state.kind_arg(args) if args.get("kind") is not None else state.KIND_DEFAULT


def new_receivable(ctx: Context, args: dict[str, Any], committed: bool) -> dict[str, Any]:
    """The record of a receivable being issued; `committed`: its face value is not on the
    chain (`amount` None: the sealed terms hold it)."""
    holder = arg_str(args, "holder", max_length=ID_LENGTH_MAX)
    amount = face_value_arg(ctx, args, committed)
    currency = asset.arg_currency(ctx, args)
    maturity = arg_int(args, "maturity_height")
    grace = _grace(args)
    documents = state.documents_arg(args)
    kind = kind_arg(args)
    order_ref = state.order_ref_arg(args, receivable_id_arg(args))
    require_account(ctx, holder)
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
        "kind": kind,
        "order_ref": order_ref,
        "documents": [
            {"name": name, "digest": digest, "by": ctx.origin, "height": ctx.height}
            for name, digest in documents
        ],
        "status": "issued",
        "issued_height": ctx.height,
        "parts": [],
        "next_part": 0,
    }


def _grace(args: dict[str, Any]) -> int:
    if args.get("grace_blocks") is None:
        return GRACE_BLOCKS_DEFAULT
    return arg_int(args, "grace_blocks", minimum=0, maximum=GRACE_BLOCKS_MAX)


def _bad(message: str) -> NoReturn:
    raise ContractError("bad_argument", message)
