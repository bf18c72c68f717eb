"""`asset` v1: balances in integer minor units, per account and currency.

Money is conserved: a transfer moves an amount from one balance to another and nothing else
creates or destroys it, except `issue` and `redeem` by the currency's issuer (a member account
named in `issuer/<currency>` at genesis or by governance). No balance ever goes negative.

Supervision: when the `regulator` contract is deployed and active, every transfer is reported
to it (`regulator.observe_transfer`), which records alerts but never refuses a transfer. A
frozen account cannot sign (the engine refuses its transactions at admission), so it cannot
send; it can still receive, so payments owed to it (a receivable's repayment) still arrive.

This module must never create or destroy money outside `issue`/`redeem`, never let a balance
go negative, and never use floats: amounts are integers in minor units (fen).

State: `balance/<currency>/<account>` -> int, `issuer/<currency>` -> account id,
`supply/<currency>` -> int.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import (
    Context,
    Contract,
    arg_int,
    arg_str,
    frozen_now,
    method,
)
from consortia.types.genesis import Genesis

CURRENCY_LENGTH = 3
CURRENCY_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
AMOUNT_MAX = 2**62


class Asset(Contract):
    name = "asset"
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        state: dict[str, Any] = {}
        supply: dict[str, int] = {}
        for account in genesis.accounts:
            if account.balance:
                key = f"balance/{account.currency}/{account.id}"
                state[key] = state.get(key, 0) + account.balance
                supply[account.currency] = supply.get(account.currency, 0) + account.balance
        for currency, total in supply.items():
            state[f"supply/{currency}"] = total
        # The first validator operator issues the chain's currencies unless governance says
        # otherwise (a central bank or settlement bank in a real consortium).
        issuers = [a.id for a in genesis.accounts if a.sponsor == genesis.members[0].name]
        if issuers:
            for currency in {a.currency for a in genesis.accounts} or {"CNY"}:
                state[f"issuer/{currency}"] = issuers[0]
        return state

    @method("transfer")
    def transfer(self, ctx: Context, args: dict[str, Any]) -> None:
        """Move `amount` of `currency` from the signer to `to`.

        Another contract may move the signer's money as part of the signer's transaction
        (a repayment through `receivable`, say): the signer authorised the whole transaction.
        """
        source = ctx.origin
        target = arg_str(args, "to", max_length=64)
        amount = arg_int(args, "amount", minimum=1)
        currency = arg_currency(ctx, args)
        ctx.require(amount <= AMOUNT_MAX, "bad_argument", "amount is too large")
        ctx.require(
            ctx.read_other("identity", f"account/{target}") is not None,
            "unknown_account",
            f"no account {target!r}",
        )
        move(ctx, source, target, currency, amount)
        if regulator_active(ctx):
            observed = {"source": source, "target": target, "currency": currency}
            ctx.invoke("regulator", "observe_transfer", {**observed, "amount": amount})

    @method("issue")
    def issue(self, ctx: Context, args: dict[str, Any]) -> None:
        currency = arg_currency(ctx, args)
        amount = arg_int(args, "amount", minimum=1)
        issuer = ctx.get(f"issuer/{currency}")
        ctx.require(ctx.caller == issuer, "not_issuer", f"only {issuer} issues {currency}")
        supply = int(ctx.get(f"supply/{currency}", 0))
        ctx.require(supply + amount <= AMOUNT_MAX, "supply_overflow", "the supply is too large")
        ctx.put(f"balance/{currency}/{issuer}", balance(ctx, issuer, currency) + amount)
        ctx.put(f"supply/{currency}", supply + amount)
        ctx.emit("issued", currency=currency, amount=amount, to=issuer)

    @method("redeem")
    def redeem(self, ctx: Context, args: dict[str, Any]) -> None:
        currency = arg_currency(ctx, args)
        amount = arg_int(args, "amount", minimum=1)
        issuer = ctx.get(f"issuer/{currency}")
        ctx.require(ctx.caller == issuer, "not_issuer", f"only {issuer} redeems {currency}")
        held = balance(ctx, issuer, currency)
        ctx.require(held >= amount, "insufficient_funds", f"{issuer} holds {held} {currency}")
        ctx.put(f"balance/{currency}/{issuer}", held - amount)
        ctx.put(f"supply/{currency}", int(ctx.get(f"supply/{currency}", 0)) - amount)
        ctx.emit("redeemed", currency=currency, amount=amount, by=issuer)


def balance(ctx: Context, account: str, currency: str) -> int:
    value = ctx.read_other("asset", f"balance/{currency}/{account}", 0)
    assert isinstance(value, int) and value >= 0, "balances are non-negative integers"
    return value


def move(ctx: Context, source: str, target: str, currency: str, amount: int) -> None:
    """Move money inside the asset contract's namespace (call only from `asset`)."""
    assert ctx.contract == "asset"
    held = balance(ctx, source, currency)
    ctx.require(held >= amount, "insufficient_funds", f"{source} holds {held} {currency}")
    ctx.put(f"balance/{currency}/{source}", held - amount)
    ctx.put(f"balance/{currency}/{target}", balance(ctx, target, currency) + amount)
    ctx.emit("transferred", currency=currency, amount=amount, source=source, target=target)


def regulator_active(ctx: Context) -> bool:
    """Whether the regulator contract would run now (deployed, and not frozen or retired)."""
    record = ctx.read_other("sys", "contract/regulator")
    if not isinstance(record, dict):
        return False
    return record.get("status") in {"active", "frozen"} and not frozen_now(record, ctx.height)


def arg_currency(ctx: Context, args: dict[str, Any]) -> str:
    """The `currency` argument: a three-letter upper-case code, "CNY" when absent."""
    currency = args.get("currency", "CNY")
    ctx.require(
        isinstance(currency, str)
        and len(currency) == CURRENCY_LENGTH
        and set(currency) <= CURRENCY_LETTERS,
        "bad_argument",
        "currency is a three-letter code",
    )
    assert isinstance(currency, str)
    return currency
