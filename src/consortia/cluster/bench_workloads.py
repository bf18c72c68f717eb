"""What each `consortia bench` workload sends: the calls, the accounts they name, the skew.

    transfer     asset.transfer of 1 fen from each of a client's accounts in turn to the next
                 benchmark account (no two transactions ever touch the same balance pair in
                 one round).
    smallbank    the SmallBank OLTP mix on the `smallbank` contract (execution/contracts/
                 smallbank.py): SMALLBANK_MIX weights the six transaction types; the customers
                 they name are chosen by `Hotspot` (HOT_SHARE_PERCENT of the choices fall on the
                 first HOT_ACCOUNTS_PERCENT of the accounts, uniformly inside each part);
                 amounts are uniform in 1..SMALLBANK_AMOUNT_MAX (transact_savings: either sign).
                 The signer (the teller) is each of the client's accounts in turn.
    receivable   supply-chain finance flows on the `receivable` contract, six steps each
                 (RECEIVABLE_STEPS): a core enterprise issues to a supplier, who accepts, splits
                 part of it to a second supplier, who offers that part to a bank, which
                 finances it; at maturity the core enterprise repays. Roles are fixed by account
                 number (identity/bench_accounts.bench_role).
    query        GET /v1/accounts/{id} of accounts chosen uniformly (`read_one`).

Everything random here comes from `client_rng(seed, client)`: the same seed gives the same
transactions, so runs are comparable.

This module owns the workloads' calls and choices (and `read_one`, the query workload's one
request); it must never sign or send a transaction, or read a clock.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from consortia.client import AsyncClient
from consortia.identity.bench_accounts import (
    ROLE_BANK,
    ROLE_CORE,
    ROLE_SUPPLIER,
    account_name,
    bench_role,
)

WORKLOAD_TRANSFER: Final = "transfer"
WORKLOAD_SMALLBANK: Final = "smallbank"
WORKLOAD_RECEIVABLE: Final = "receivable"
WORKLOAD_QUERY: Final = "query"
WORKLOADS: Final = (WORKLOAD_TRANSFER, WORKLOAD_SMALLBANK, WORKLOAD_RECEIVABLE, WORKLOAD_QUERY)
PRESIGNED: Final = (WORKLOAD_TRANSFER, WORKLOAD_SMALLBANK)  # signed before the clock starts

TRANSFER_AMOUNT: Final = 1  # fen a transfer

# SmallBank: the transaction mix (percent) and the hotspot.
SMALLBANK_MIX: Final = (
    ("amalgamate", 15),
    ("get_balance", 15),
    ("deposit_checking", 15),
    ("send_payment", 25),
    ("transact_savings", 15),
    ("write_check", 15),
)
HOT_ACCOUNTS_PERCENT: Final = 10
HOT_SHARE_PERCENT: Final = 90
SMALLBANK_AMOUNT_MAX: Final = 10_000

# Receivable: the steps of one flow, its face value, the part split off, the bank's discount.
RECEIVABLE_STEPS: Final = ("issue", "accept", "split_transfer", "offer_finance", "finance", "repay")
FACE_VALUE: Final = 100_000  # 1,000.00 CNY in fen
SPLIT_PERCENT: Final = 30  # of the face value, passed to the second supplier
DISCOUNT_PERCENT: Final = 2  # the bank pays the part's amount less this
MATURITY_BLOCKS_DEFAULT: Final = 40  # blocks from the issuer's view of the height to maturity


@dataclass(frozen=True, slots=True)
class Call:
    """One transaction to sign: what it calls, and the name the report counts it under."""

    kind: str
    contract: str
    method: str
    args: dict[str, Any]


def client_rng(seed: int, client: int) -> random.Random:
    """The random source of client `client` in a run seeded with `seed`."""
    return random.Random(seed * 1_000_003 + client)  # noqa: S311 - a load, not a secret


# ---------------------------------------------------------------- transfer and smallbank


def transfer_calls(
    accounts: Sequence[int], account_count: int, count: int
) -> Iterator[tuple[int, Call]]:
    """(position of the signer in `accounts`, call) for `count` transfers."""
    for j in range(count):
        position = j % len(accounts)
        target = account_name((accounts[position] + 1) % account_count)
        args = {"to": target, "amount": TRANSFER_AMOUNT, "currency": "CNY"}
        yield position, Call("transfer", "asset", "transfer", args)


class Hotspot:
    """Customer choice with a hotspot: of `count` accounts the first
    ceil(count x hot_percent / 100) are hot; a choice falls among them with probability
    share_percent / 100, among the others otherwise, uniformly inside each part."""

    def __init__(
        self,
        count: int,
        hot_percent: int = HOT_ACCOUNTS_PERCENT,
        share_percent: int = HOT_SHARE_PERCENT,
    ) -> None:
        assert count >= 2, "a hotspot needs two accounts"
        self.count = count
        self.hot = min(count - 1, max(1, -(-count * hot_percent // 100)))
        self.share_percent = share_percent

    def choose(self, rng: random.Random) -> int:
        if rng.randrange(100) < self.share_percent:
            return rng.randrange(self.hot)
        return rng.randrange(self.hot, self.count)

    def pair(self, rng: random.Random) -> tuple[int, int]:
        """Two different customers."""
        first = self.choose(rng)
        while True:
            second = self.choose(rng)
            if second != first:
                return first, second


def smallbank_call(rng: random.Random, hotspot: Hotspot) -> Call:
    """One SmallBank transaction of the mix, its customers chosen by `hotspot`."""
    kind = _mix_kind(rng.randrange(100))
    amount = rng.randint(1, SMALLBANK_AMOUNT_MAX)
    if kind in ("amalgamate", "send_payment"):
        source, target = hotspot.pair(rng)
        args: dict[str, Any] = {"source": account_name(source), "target": account_name(target)}
        if kind == "send_payment":
            args["amount"] = amount
    else:
        args = {"customer": account_name(hotspot.choose(rng))}
        if kind == "transact_savings":
            args["amount"] = amount if rng.randrange(2) else -amount
        elif kind != "get_balance":
            args["amount"] = amount
    return Call(kind, "smallbank", kind, args)


def _mix_kind(roll: int) -> str:
    """The transaction type a roll of 0..99 picks from SMALLBANK_MIX."""
    for kind, weight in SMALLBANK_MIX:
        if roll < weight:
            return kind
        roll -= weight
    raise AssertionError("the mix sums to 100")


def smallbank_calls(
    accounts: Sequence[int], account_count: int, count: int, rng: random.Random
) -> Iterator[tuple[int, Call]]:
    """(position of the signer in `accounts`, call) for `count` SmallBank transactions on
    the customers bench-000000 .. (account_count - 1)."""
    hotspot = Hotspot(account_count)
    for j in range(count):
        yield j % len(accounts), smallbank_call(rng, hotspot)


def presigned_calls(
    workload: str,
    accounts: Sequence[int],
    account_count: int,
    count: int,
    rng: random.Random,
) -> Iterator[tuple[int, Call]]:
    if workload == WORKLOAD_TRANSFER:
        return transfer_calls(accounts, account_count, count)
    assert workload == WORKLOAD_SMALLBANK, workload
    return smallbank_calls(accounts, account_count, count, rng)


# ---------------------------------------------------------------- receivable


@dataclass(slots=True)
class Flow:
    """One receivable's way through RECEIVABLE_STEPS, between accounts of one client."""

    debtor: int
    supplier: int
    second: int  # the supplier's own supplier, who receives the split part
    bank: int
    step: int = 0  # the next step to send
    receivable_id: str = ""  # fixed when the issue is signed
    maturity_height: int = 0

    @property
    def kind(self) -> str:
        return RECEIVABLE_STEPS[self.step]

    @property
    def done(self) -> bool:
        return self.step >= len(RECEIVABLE_STEPS)


def by_role(accounts: Sequence[int]) -> dict[str, list[int]]:
    """`accounts` sorted by their role."""
    roles: dict[str, list[int]] = {ROLE_CORE: [], ROLE_BANK: [], ROLE_SUPPLIER: []}
    for account in accounts:
        roles[bench_role(account)].append(account)
    return roles


def new_flow(rng: random.Random, roles: dict[str, list[int]]) -> Flow:
    """A flow between a core enterprise, two different suppliers and a bank of `roles`."""
    supplier, second = rng.sample(roles[ROLE_SUPPLIER], 2)
    return Flow(rng.choice(roles[ROLE_CORE]), supplier, second, rng.choice(roles[ROLE_BANK]))


def split_amount() -> int:
    return FACE_VALUE * SPLIT_PERCENT // 100


def finance_price() -> int:
    return split_amount() - split_amount() * DISCOUNT_PERCENT // 100


def flow_call(flow: Flow) -> tuple[int, Call]:
    """(signing account, call) of the flow's next step. The issue's receivable id and
    maturity must be set first; the parts are "<id>#0" (accepted) and "<id>#1" (split off)."""
    kind, rid = flow.kind, flow.receivable_id
    assert rid, "the issue names the receivable"
    if kind == "issue":
        args: dict[str, Any] = {
            "receivable_id": rid,
            "holder": account_name(flow.supplier),
            "amount": FACE_VALUE,
            "currency": "CNY",
            "maturity_height": flow.maturity_height,
            # A stand-in invoice digest: the benchmark has no documents to anchor.
            "documents": [f"invoice:{hashlib.sha256(rid.encode()).hexdigest()}"],
        }
        signer = flow.debtor
    elif kind == "accept":
        args, signer = {"receivable_id": rid}, flow.supplier
    elif kind == "split_transfer":
        args = {"part_id": f"{rid}#0", "to": account_name(flow.second), "amount": split_amount()}
        signer = flow.supplier
    elif kind == "offer_finance":
        args = {"part_id": f"{rid}#1", "bank": account_name(flow.bank), "price": finance_price()}
        signer = flow.second
    elif kind == "finance":
        args = {"part_id": f"{rid}#1", "bank": account_name(flow.bank), "price": finance_price()}
        signer = flow.bank
    else:
        args, signer = {"receivable_id": rid}, flow.debtor
    return signer, Call(kind, "receivable", kind, args)


# ---------------------------------------------------------------- query


async def read_one(client: AsyncClient, account: str) -> None:
    """One read of the query workload: the account as proven under a certified state root,
    checked by the client's light client (certificate and every proof)."""
    await client.account(account, verify=True)


def query_account(rng: random.Random, account_count: int) -> str:
    return account_name(rng.randrange(account_count))
