"""`smallbank` v1: the SmallBank OLTP benchmark as a contract, for `consortia bench`.

Each customer has a checking and a savings balance (integers, minor units). Six transaction
types, as in the benchmark:

    amalgamate {source, target}        all of source's savings and checking move to target's
                                       checking; source's balances become 0
    get_balance {customer}             returns savings + checking (a read, sent as a
                                       transaction so that it is ordered and counted like one)
    deposit_checking {customer, amount}   checking += amount (amount >= 1)
    send_payment {source, target, amount} checking to checking; refused with
                                       `insufficient_funds` when source's checking < amount
    transact_savings {customer, amount}   savings += amount (amount may be negative, not 0);
                                       refused with `insufficient_funds` below 0
    write_check {customer, amount}     checking -= amount, and OVERDRAFT_PENALTY more when
                                       checking + savings < amount (checking may go negative)

It is a benchmark, not a bank: its balances are units of its own namespace, never `asset`
money; like the benchmark it has no authorisation (any account may act on any customer: the
signer is the teller at the counter). Customers exist only from genesis: every genesis account
whose id starts with CUSTOMER_PREFIX (the benchmark accounts of `cluster up --accounts`) is
opened with INITIAL_CHECKING and INITIAL_SAVINGS; a chain without such accounts has none, and
any call naming another id is refused with `unknown_customer`.

State (this module owns it and its only accessors, `customer_key` and `read_customer`):
    customer/<id>    {"checking": int, "savings": int}

This module must never touch another contract's state or move `asset` money, never use
floats, and never let a balance leave -BALANCE_LIMIT..BALANCE_LIMIT.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    Context,
    Contract,
    StateReader,
    arg_int,
    arg_str,
    method,
    read_record,
)
from consortia.types.genesis import Genesis

CONTRACT: Final = "smallbank"
CUSTOMER_PREFIX: Final = "bench-"  # the benchmark accounts (identity/bench_accounts.PREFIX)
INITIAL_CHECKING: Final = 1_000_000  # 10,000.00 in minor units
INITIAL_SAVINGS: Final = 1_000_000
OVERDRAFT_PENALTY: Final = 1  # taken by write_check when the customer cannot cover the check
AMOUNT_MAX: Final = 10**12  # one transaction's amount, either sign
BALANCE_LIMIT: Final = 2**62
ID_LENGTH_MAX: Final = 64


class SmallBank(Contract):
    name = CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        opened = {"checking": INITIAL_CHECKING, "savings": INITIAL_SAVINGS}
        return {
            customer_key(account.id): dict(opened)
            for account in genesis.accounts
            if account.id.startswith(CUSTOMER_PREFIX)
        }

    @method("amalgamate")
    def amalgamate(self, ctx: Context, args: dict[str, Any]) -> int:
        """Move all of `source`'s money into `target`'s checking; returns the amount moved."""
        source, target = _pair(ctx, args)
        giver, taker = _customer(ctx, source), _customer(ctx, target)
        total = int(giver["checking"] + giver["savings"])
        taker["checking"] = _bounded(ctx, taker["checking"] + total)
        _store(ctx, source, {"checking": 0, "savings": 0})
        _store(ctx, target, taker)
        return total

    @method("get_balance")
    def get_balance(self, ctx: Context, args: dict[str, Any]) -> int:
        record = _customer(ctx, _id(args, "customer"))
        return int(record["checking"] + record["savings"])

    @method("deposit_checking")
    def deposit_checking(self, ctx: Context, args: dict[str, Any]) -> None:
        customer = _id(args, "customer")
        amount = arg_int(args, "amount", minimum=1, maximum=AMOUNT_MAX)
        record = _customer(ctx, customer)
        record["checking"] = _bounded(ctx, record["checking"] + amount)
        _store(ctx, customer, record)

    @method("send_payment")
    def send_payment(self, ctx: Context, args: dict[str, Any]) -> None:
        source, target = _pair(ctx, args)
        amount = arg_int(args, "amount", minimum=1, maximum=AMOUNT_MAX)
        giver, taker = _customer(ctx, source), _customer(ctx, target)
        ctx.require(
            giver["checking"] >= amount,
            "insufficient_funds",
            f"{source}'s checking holds {giver['checking']}",
        )
        giver["checking"] -= amount
        taker["checking"] = _bounded(ctx, taker["checking"] + amount)
        _store(ctx, source, giver)
        _store(ctx, target, taker)

    @method("transact_savings")
    def transact_savings(self, ctx: Context, args: dict[str, Any]) -> None:
        customer = _id(args, "customer")
        amount = arg_int(args, "amount", minimum=-AMOUNT_MAX, maximum=AMOUNT_MAX)
        ctx.require(amount != 0, "bad_argument", "amount must not be 0")
        record = _customer(ctx, customer)
        savings = record["savings"] + amount
        ctx.require(savings >= 0, "insufficient_funds", f"{customer}'s savings would be {savings}")
        record["savings"] = _bounded(ctx, savings)
        _store(ctx, customer, record)

    @method("write_check")
    def write_check(self, ctx: Context, args: dict[str, Any]) -> None:
        customer = _id(args, "customer")
        amount = arg_int(args, "amount", minimum=1, maximum=AMOUNT_MAX)
        record = _customer(ctx, customer)
        covered = record["checking"] + record["savings"] >= amount
        charge = amount if covered else amount + OVERDRAFT_PENALTY
        record["checking"] = _bounded(ctx, record["checking"] - charge)
        _store(ctx, customer, record)


def customer_key(customer: str) -> str:
    return f"customer/{customer}"


def read_customer(read: StateReader, customer: str) -> dict[str, Any] | None:
    """A customer's {"checking", "savings"}, or None: no such customer."""
    return read_record(read, CONTRACT, customer_key(customer))


def _id(args: dict[str, Any], name: str) -> str:
    return arg_str(args, name, max_length=ID_LENGTH_MAX)


def _pair(ctx: Context, args: dict[str, Any]) -> tuple[str, str]:
    source, target = _id(args, "source"), _id(args, "target")
    ctx.require(source != target, "same_customer", "source and target are one customer")
    return source, target


def _customer(ctx: Context, customer: str) -> dict[str, Any]:
    record = ctx.get(customer_key(customer))
    ctx.require(isinstance(record, dict), "unknown_customer", f"no customer {customer!r}")
    assert isinstance(record, dict)
    return record


def _store(ctx: Context, customer: str, record: dict[str, Any]) -> None:
    ctx.put(customer_key(customer), {"checking": record["checking"], "savings": record["savings"]})


def _bounded(ctx: Context, balance: int) -> int:
    ctx.require(-BALANCE_LIMIT <= balance <= BALANCE_LIMIT, "balance_overflow", "out of range")
    return balance
