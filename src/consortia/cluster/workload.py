"""The demo workload of `make run`: transfers among the demo accounts at a steady rate, and
one supply-chain finance receivable at a time taken through its life (docs/contracts.md):

    issue            the debtor (a demo account) owes its supplier FACE_VALUE at maturity
    accept           the supplier accepts: part #0 is the whole face value
    split_transfer   the supplier pays its own supplier 30% of it (part #1)
    offer_finance    that supplier offers part #1 to a bank's treasury at a discount
    finance          the bank pays the discounted price and holds part #1
    repay            at maturity the debtor pays every part's holder; settled

The roles rotate among alice, bob, carol and dave and the banks take turns, so no account
drains. Each account's nonces are tracked here, so several of its transactions can wait in
the mempool at once; a refusal about nonces, or a transaction that vanished, makes the
workload read the account's committed nonce again. It talks to one node and moves to the next
when that one stops answering.

This module submits only signed transactions through the SDK; it must never hold a passphrase
(the caller opens the keys) nor print: it reports through `WorkloadStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from consortia.client import AsyncClient, ClientError, Signer
from consortia.client.anchors import suite_digest

TICK_S: Final = 0.1
TRANSFER_MINOR_MIN: Final = 100  # 1.00 CNY
TRANSFER_MINOR_MAX: Final = 10_000  # 100.00 CNY
PENDING_PER_ACCOUNT_MAX: Final = 8
POLL_BATCH_MAX: Final = 64
LOST_AFTER_S: Final = 30.0
EXPIRY_AHEAD_BLOCKS: Final = 1000
FACE_VALUE: Final = 10_000_000  # 100,000.00 CNY in fen
SPLIT_PERCENT: Final = 30
DISCOUNT_BASIS_POINTS_PER_YEAR: Final = 240  # 2.4%
DISCOUNT_DAYS: Final = 90
MATURITY_S: Final = 8.0  # how long after issue a receivable matures, in observed block time
MATURITY_BLOCKS_MIN: Final = 30
MATURITY_BLOCKS_MAX: Final = 5000
STEPS: Final = ("issue", "accept", "split_transfer", "offer_finance", "finance", "repay")
NONCE_CODES: Final = frozenset({"stale_nonce", "nonce_taken", "nonce_too_far", "bad_nonce"})


@dataclass
class WorkloadStats:
    transfers_submitted: int = 0
    transfers_committed: int = 0
    failed: int = 0  # transactions that failed in their block
    refused: int = 0  # submissions the node refused
    receivables_settled: int = 0
    receivable_id: str | None = None  # the receivable in flight (or the last one)
    receivable_step: str = "-"
    events: deque[str] = field(default_factory=lambda: deque(maxlen=6))

    def note(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")


@dataclass(slots=True)
class _Pending:
    account: str
    kind: str  # "transfer" or "receivable"
    submitted_at: float


@dataclass(slots=True)
class _Flow:
    """One receivable's life: who plays which part and which step comes next."""

    receivable_id: str
    debtor: str
    supplier: str
    sub_supplier: str
    bank: str
    part_amount: int = FACE_VALUE * SPLIT_PERCENT // 100
    step: int = 0
    waiting: str | None = None  # the hash of the step in flight
    maturity_height: int = 0
    suite: str = "intl"  # the chain's suite: the invoice's digest is anchored under it

    @property
    def price(self) -> int:
        discount = (
            self.part_amount * DISCOUNT_BASIS_POINTS_PER_YEAR * DISCOUNT_DAYS // (10_000 * 365)
        )
        return self.part_amount - discount

    def call(self, height: int, maturity_blocks: int) -> tuple[str, dict[str, Any]]:
        """The signer and arguments of the next step."""
        name = STEPS[self.step]
        receivable = self.receivable_id
        part0, part1 = f"{receivable}#0", f"{receivable}#1"
        if name == "issue":
            self.maturity_height = height + maturity_blocks
            invoice = f"invoice {receivable}".encode()  # stands for the invoice's file
            return self.debtor, {
                "receivable_id": receivable,
                "holder": self.supplier,
                "amount": FACE_VALUE,
                "currency": "CNY",
                "maturity_height": self.maturity_height,
                "documents": [f"invoice:{suite_digest(self.suite, invoice)}"],
            }
        if name == "accept":
            return self.supplier, {"receivable_id": receivable}
        if name == "split_transfer":
            return self.supplier, {
                "part_id": part0,
                "to": self.sub_supplier,
                "amount": self.part_amount,
            }
        if name == "offer_finance":
            return self.sub_supplier, {"part_id": part1, "bank": self.bank, "price": self.price}
        if name == "finance":
            return self.bank, {"part_id": part1, "bank": self.bank, "price": self.price}
        return self.debtor, {"receivable_id": receivable}


class Workload:
    """Drives the demo transactions against the nodes at `urls` (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        signers: dict[str, Signer],
        customers: list[str],
        banks: list[str],
        *,
        rate_per_s: float,
        rng: random.Random,
    ) -> None:
        assert len(customers) >= 3 and banks, "the flow needs three customers and a bank"
        assert all(name in signers for name in [*customers, *banks])
        self.urls, self.signers = urls, signers
        self.customers, self.banks = customers, banks
        self.rate_per_s = rate_per_s
        self.rng = rng
        self.tag = f"{rng.randrange(16**6):06x}"  # receivable ids differ between runs
        self.stats = WorkloadStats()
        self._url_index = 0
        self._client = AsyncClient(urls[0])
        self._nonces: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._height = 0
        self._heights: deque[tuple[float, int]] = deque(maxlen=64)
        self._tokens = 0.0
        self._last_send = 0.0
        self._cycle = 0
        self._flow: _Flow | None = None
        self._refusal = ""  # the code of the latest refused submission

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self._tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_S)
        finally:
            await self._client.close()

    async def _tick(self) -> None:
        try:
            await self._observe_height()
            for account in self.signers:
                if account not in self._nonces:
                    await self._resync(account)
            await self._poll_pending()
            await self._advance_receivable()
            await self._send_transfers()
        except ClientError as error:
            if error.code != "unreachable":
                raise
            await self._next_node()

    async def _next_node(self) -> None:
        await self._client.close()
        self._url_index = (self._url_index + 1) % len(self.urls)
        self._client = AsyncClient(self.urls[self._url_index])
        self._nonces.clear()  # read again from the new node
        self._pending.clear()
        self.stats.note(f"switched to {self.urls[self._url_index]}")

    async def _observe_height(self) -> None:
        self._height = int((await self._client.status())["height"])
        self._heights.append((time.monotonic(), self._height))

    def _maturity_blocks(self) -> int:
        (start, first), (end, last) = self._heights[0], self._heights[-1]
        per_s = (last - first) / (end - start) if end > start else 0.0
        blocks = int(per_s * MATURITY_S)
        return min(max(blocks, MATURITY_BLOCKS_MIN), MATURITY_BLOCKS_MAX)

    async def _resync(self, account: str) -> None:
        self._nonces[account] = int((await self._client.account(account))["nonce"])
        for tx_hash in [h for h, p in self._pending.items() if p.account == account]:
            del self._pending[tx_hash]

    async def _submit(
        self, account: str, contract: str, method: str, args: dict[str, Any], kind: str
    ) -> str | None:
        nonce = self._nonces[account]
        raw = self.signers[account].transaction(
            contract, method, args, nonce=nonce, expiry_height=self._height + EXPIRY_AHEAD_BLOCKS
        )
        try:
            tx_hash = await self._client.submit(raw)
        except ClientError as error:
            if error.code == "unreachable":
                raise
            self.stats.refused += 1
            self._refusal = error.code
            self.stats.note(f"{account} {contract}.{method} refused: {error.code}")
            if error.code in NONCE_CODES:
                await self._resync(account)
            return None
        self._nonces[account] = nonce + 1
        self._pending[tx_hash] = _Pending(account, kind, time.monotonic())
        return tx_hash

    async def _poll_pending(self) -> None:
        hashes = list(self._pending)[:POLL_BATCH_MAX]
        records = await asyncio.gather(
            *(self._client.transaction(tx_hash) for tx_hash in hashes), return_exceptions=True
        )
        for tx_hash, record in zip(hashes, records, strict=True):
            pending = self._pending.get(tx_hash)
            if pending is None:
                continue
            if isinstance(record, ClientError) and record.code == "unreachable":
                raise record
            if isinstance(record, BaseException):
                if time.monotonic() - pending.submitted_at > LOST_AFTER_S:
                    self.stats.note(f"{pending.account}: a transaction was lost; resyncing")
                    await self._resync(pending.account)
                    self._forget_flow_step(tx_hash)
                continue
            if record["status"] == "pending":
                continue
            del self._pending[tx_hash]
            self._finished(tx_hash, pending, record)

    def _finished(self, tx_hash: str, pending: _Pending, record: dict[str, Any]) -> None:
        ok = record["status"] == "committed"
        code = str((record.get("receipt") or {}).get("code", ""))
        if not ok:
            self.stats.failed += 1
        if pending.kind == "transfer":
            if ok:
                self.stats.transfers_committed += 1
            else:
                self.stats.note(f"{pending.account} transfer failed: {code}")
            return
        flow = self._flow
        if flow is None or flow.waiting != tx_hash:
            return
        flow.waiting = None
        step = STEPS[flow.step]
        if ok:
            self.stats.note(f"{flow.receivable_id}: {step} committed at {record.get('height')}")
            if step == "repay":
                self.stats.receivables_settled += 1
                self._flow = None
            else:
                flow.step += 1
            return
        self.stats.note(f"{flow.receivable_id}: {step} failed: {code}")
        # Once accepted the receivable can still be repaid; before that, start a new one.
        if 1 <= flow.step < len(STEPS) - 1 and step != "accept":
            flow.step = len(STEPS) - 1
        else:
            self._flow = None

    def _forget_flow_step(self, tx_hash: str) -> None:
        if self._flow is not None and self._flow.waiting == tx_hash:
            self._flow.waiting = None  # submit the same step again

    async def _advance_receivable(self) -> None:
        if self._flow is None:
            self._flow = self._new_flow()
        flow = self._flow
        self.stats.receivable_id = flow.receivable_id
        self.stats.receivable_step = STEPS[flow.step]
        if flow.waiting is not None:
            return
        if STEPS[flow.step] == "repay" and self._height < flow.maturity_height:
            self.stats.receivable_step = f"matures at {flow.maturity_height}"
            return
        signer, args = flow.call(self._height, self._maturity_blocks())
        self._refusal = ""
        flow.waiting = await self._submit(
            signer, "receivable", STEPS[flow.step], args, "receivable"
        )
        if flow.waiting is None and self._refusal not in NONCE_CODES:
            self._flow = None  # refused for good: start another receivable

    def _new_flow(self) -> _Flow:
        cycle, people = self._cycle, self.customers
        self._cycle += 1
        return _Flow(
            receivable_id=f"DEMO-{self.tag}-{cycle}",
            debtor=people[cycle % len(people)],
            supplier=people[(cycle + 1) % len(people)],
            sub_supplier=people[(cycle + 2) % len(people)],
            bank=self.banks[cycle % len(self.banks)],
            suite=self.signers[people[cycle % len(people)]].chain.suite,
        )

    async def _send_transfers(self) -> None:
        now = time.monotonic()
        elapsed_s = now - self._last_send if self._last_send else TICK_S
        self._last_send = now
        self._tokens = min(self._tokens + self.rate_per_s * elapsed_s, max(1.0, self.rate_per_s))
        while self._tokens >= 1:
            waiting = {name: 0 for name in self.customers}
            for pending in self._pending.values():
                if pending.account in waiting:
                    waiting[pending.account] += 1
            free = [name for name, count in waiting.items() if count < PENDING_PER_ACCOUNT_MAX]
            if not free:
                return
            self._tokens -= 1
            sender = self.rng.choice(free)
            receiver = self.rng.choice([name for name in self.customers if name != sender])
            amount = self.rng.randint(TRANSFER_MINOR_MIN, TRANSFER_MINOR_MAX)
            args = {"to": receiver, "amount": amount, "currency": "CNY"}
            if await self._submit(sender, "asset", "transfer", args, "transfer"):
                self.stats.transfers_submitted += 1
