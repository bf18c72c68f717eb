"""`asset` v1: balances in integer minor units, per account and currency.

Money is conserved: a transfer moves an amount from one balance to another and nothing else
creates or destroys it, except `issue` and `redeem` by the currency's issuer (a member account
named in `issuer/<currency>` at genesis or by governance). No balance ever goes negative.

Supervision: when the `regulator` contract is deployed and active, every transfer is reported
to it (`regulator.observe_transfer`), which records alerts but never refuses a transfer. A
frozen account cannot sign (the engine refuses its transactions at admission), so it cannot
send; it can still receive, so payments owed to it (a receivable's repayment) still arrive.

State (this module owns it and the only accessors for it, `balance`, `issuer` and the key
functions): `balance/<currency>/<account>` -> int, `issuer/<currency>` -> account id,
`supply/<currency>` -> int.

This module must never create or destroy money outside `issue`/`redeem`, never let a balance
go negative, and never use floats: amounts are integers in minor units (fen).
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    CURRENCY_DEFAULT,
    Context,
    Contract,
    arg_int,
    arg_str,
    is_currency,
    method,
)
from consortia.execution.contracts import identity_state, regulator_state, system
from consortia.types.genesis import Genesis

CONTRACT: Final = "asset"
REGULATOR: Final = regulator_state.CONTRACT  # told of every transfer when it runs
AMOUNT_MAX = 2**62


class Asset(Contract):
    name = CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        state: dict[str, Any] = {}
        supply: dict[str, int] = {}
        for account in genesis.accounts:
            if account.balance:
                key = balance_key(account.currency, account.id)
                state[key] = state.get(key, 0) + account.balance
                supply[account.currency] = supply.get(account.currency, 0) + account.balance
        for currency, total in supply.items():
            state[supply_key(currency)] = total
        # The first validator operator issues the chain's currencies unless governance says
        # otherwise (a central bank or settlement bank in a real consortium).
        issuers = [a.id for a in genesis.accounts if a.sponsor == genesis.members[0].name]
        if issuers:
            for currency in {a.currency for a in genesis.accounts} or {CURRENCY_DEFAULT}:
                state[issuer_key(currency)] = issuers[0]
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
        # (`if ... fail`, not `require`: one call fewer, and a message built only for a refusal)
        if amount > AMOUNT_MAX:
            ctx.fail("bad_argument", "amount is too large")
        if not identity_state.account_exists(ctx, target):
            ctx.fail("unknown_account", f"no account {target!r}")
        move(ctx, source, target, currency, amount)
        if regulator_active(ctx):
            observed = {"source": source, "target": target, "currency": currency, "amount": amount}
            ctx.invoke(REGULATOR, "observe_transfer", observed)

    @method("issue")
    def issue(self, ctx: Context, args: dict[str, Any]) -> None:
        currency = arg_currency(ctx, args)
        amount = arg_int(args, "amount", minimum=1)
        issuer = _require_issuer(ctx, currency, "issues")
        supply = int(ctx.get(supply_key(currency), 0))
        ctx.require(supply + amount <= AMOUNT_MAX, "supply_overflow", "the supply is too large")
        ctx.put(balance_key(currency, issuer), balance(ctx, issuer, currency) + amount)
        ctx.put(supply_key(currency), supply + amount)
        ctx.emit("issued", currency=currency, amount=amount, to=issuer)

    @method("redeem")
    def redeem(self, ctx: Context, args: dict[str, Any]) -> None:
        currency = arg_currency(ctx, args)
        amount = arg_int(args, "amount", minimum=1)
        issuer = _require_issuer(ctx, currency, "redeems")
        held = balance(ctx, issuer, currency)
        ctx.require(held >= amount, "insufficient_funds", f"{issuer} holds {held} {currency}")
        ctx.put(balance_key(currency, issuer), held - amount)
        ctx.put(supply_key(currency), int(ctx.get(supply_key(currency), 0)) - amount)
        ctx.emit("redeemed", currency=currency, amount=amount, by=issuer)


def balance_key(currency: str, account: str) -> str:
    return f"balance/{currency}/{account}"


def issuer_key(currency: str) -> str:
    return f"issuer/{currency}"


def supply_key(currency: str) -> str:
    return f"supply/{currency}"


def balance(ctx: Context, account: str, currency: str) -> int:
    value = ctx.read_other(CONTRACT, balance_key(currency, account), 0)
    assert isinstance(value, int) and value >= 0, "balances are non-negative integers"
    return value


def currencies_prefix() -> str:
    """The key prefix under which every currency's issuer is recorded (for listing)."""
    return issuer_key("")


def issuer(ctx: Context, currency: str) -> str | None:
    """The account that issues `currency`, or None: no such currency on this chain."""
    account = ctx.read_other(CONTRACT, issuer_key(currency))
    assert account is None or isinstance(account, str), "issuers are account ids"
    return account


def move(ctx: Context, source: str, target: str, currency: str, amount: int) -> None:
    """Move money inside the asset contract's namespace (call only from `asset`)."""
    assert ctx.contract == CONTRACT
    # `balance`, written out: each key is spelled once for its read and its write.
    source_key, target_key = balance_key(currency, source), balance_key(currency, target)
    held = ctx.get(source_key, 0)
    assert isinstance(held, int) and held >= 0, "balances are non-negative integers"
    if held < amount:
        ctx.fail("insufficient_funds", f"{source} holds {held} {currency}")
    ctx.put(source_key, held - amount)
    received = ctx.get(target_key, 0)
    assert isinstance(received, int) and received >= 0, "balances are non-negative integers"
    ctx.put(target_key, received + amount)
    ctx.emit("transferred", currency=currency, amount=amount, source=source, target=target)


def regulator_active(ctx: Context) -> bool:
    """Whether the regulator contract would run now (deployed, and not frozen or retired)."""
    record = system.deployment(ctx, REGULATOR)
    return record is not None and system.deployment_runs(record, ctx.height)


def _require_issuer(ctx: Context, currency: str, does: str) -> str:
    """The issuer of `currency`, which must be the caller."""
    account = ctx.get(issuer_key(currency))
    ctx.require(ctx.caller == account, "not_issuer", f"only {account} {does} {currency}")
    return str(account)


def arg_currency(ctx: Context, args: dict[str, Any]) -> str:
    """The `currency` argument: a three-letter upper-case code, CURRENCY_DEFAULT when absent."""
    currency = args.get("currency", CURRENCY_DEFAULT)
    if currency is not CURRENCY_DEFAULT and not is_currency(currency):
        ctx.fail("bad_argument", "currency is a three-letter code")
    return currency
