"""Whether the legs found are all there is: each account's proven balance before and after the
heights walked must differ by exactly the legs' sum.

A receipt proof shows that a transaction happened; it cannot show that the node named every
transaction touching an account. The balance can: `asset` is the only contract that moves
money, and every move emits `transferred`, `issued` or `redeemed`, so the balance at the last
height minus the balance before the first is the sum of the account's legs, unless a leg is
missing. Both balances are read as state proofs under certified state roots (the one before
height 1 is the genesis document's, which the light client starts from).

A node keeps the state of recent heights only (`state_history_heights`, 10,000 by default):
a balance it can no longer prove leaves that check undone (`complete: null`), never passed.

Owns this check. Must never call an account complete from a balance it has not proven.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from consortia.client import Client
from consortia.client.state_reads import ASSET, balance_key
from consortia.errors import InvalidArgumentError, NodeRefusalError
from consortia.reconcile.chain import Window, ask
from consortia.reconcile.errors import ChainVerificationError
from consortia.reconcile.match import Leg
from consortia.types.genesis import Genesis
from consortia.types.primitives import CURRENCY_DEFAULT

CURRENCIES_MAX: Final = 16  # currencies checked per account
# A node's refusals that leave a balance unchecked rather than stop the run: a height whose
# state it no longer keeps, or holds no certificate for.
UNAVAILABLE: Final = frozenset({"height_unavailable", "not_certified"})


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """One account's balance in one currency before and after the heights walked, and what
    its legs moved."""

    account: str
    currency: str
    before: int | None  # None: the node no longer keeps that height's state
    after: int | None
    moved: int

    @property
    def complete(self) -> bool | None:
        """Whether the legs account for the balance's change; None: not checked (a balance
        the node could no longer prove)."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before == self.moved

    def view(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "currency": self.currency,
            "before": self.before,
            "after": self.after,
            "moved": self.moved,
            "complete": self.complete,
        }


def genesis_balance(genesis: Genesis, account: str, currency: str) -> int:
    """The account's balance at height 0, as the genesis document gives it."""
    return sum(
        entry.balance
        for entry in genesis.accounts
        if entry.id == account and entry.currency == currency and entry.balance
    )


def currencies(genesis: Genesis, legs: list[Leg]) -> list[str]:
    """The currencies to check: every currency that can hold money on this chain, whatever
    the books or the node mention. `asset` gives balances only at genesis and by `issue`,
    whose issuers are those of the genesis's currencies (CNY when it names none), so those
    are all; the legs' (proven) currencies are added for a chain whose `asset` learnt more.
    Checking only the currencies the books or the legs name would let a node hide every
    transfer in a currency the books never booked."""
    found = {CURRENCY_DEFAULT, *(entry.currency for entry in genesis.accounts)}
    found |= {leg.currency for leg in legs}
    if len(found) > CURRENCIES_MAX:
        raise InvalidArgumentError(
            f"more than {CURRENCIES_MAX} currencies on this chain: the balances check cannot"
            " cover them"
        )
    return sorted(found)


def proven_balance(client: Client, account: str, currency: str, height: int) -> int:
    """The account's balance at `height`, proven under that height's certified state root."""
    answer = ask(
        partial(client.state_answer, ASSET, balance_key(currency, account), height, verify=True)
    )
    if int(answer["height"]) != height:
        raise ChainVerificationError(f"a balance proven at height {answer['height']}, not {height}")
    value = answer["value"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ChainVerificationError(f"the balance of {account} is not an integer")
    return int(value or 0)


def check(
    client: Client,
    genesis: Genesis,
    accounts: tuple[str, ...],
    heights: Window,
    legs: list[Leg],
) -> list[BalanceCheck]:
    """One check per account and currency (genesis balances where a height is 0)."""

    def balance(account: str, currency: str, height: int) -> int | None:
        if height == 0:
            return genesis_balance(genesis, account, currency)
        try:
            return proven_balance(client, account, currency, height)
        except NodeRefusalError as error:
            if error.node_code in UNAVAILABLE:
                return None
            raise

    checks = []
    for account in accounts:
        for currency in currencies(genesis, legs):
            moved = sum(
                leg.amount for leg in legs if (leg.account, leg.currency) == (account, currency)
            )
            checks.append(
                BalanceCheck(
                    account,
                    currency,
                    balance(account, currency, heights.first - 1),
                    balance(account, currency, heights.last),
                    moved,
                )
            )
    return checks
