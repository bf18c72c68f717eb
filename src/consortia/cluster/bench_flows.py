"""The receivable workload's client: supply-chain finance flows, each a closed chain of steps
(bench_workloads.RECEIVABLE_STEPS) whose next step is signed only once the bench process has
seen the previous one committed; many flows in parallel keep the rate.

The client's accounts are a contiguous share of the benchmark accounts (client c of C takes
accounts c x A / C up to (c + 1) x A / C), so that each client has every role
(bench_accounts.bench_role) and every account of a flow is its own: it alone signs for them,
so it numbers their nonces itself, several transactions of one account in flight at once.

Whenever the schedule (a fixed rate) or the window (`max`) allows a transaction, the client
sends the next step of a flow whose previous step committed, or starts a new flow (an issue).
A repayment waits until the height the bench process has seen reaches the receivable's
maturity (MATURITY_BLOCKS_DEFAULT blocks, or --maturity-blocks, after the height seen at the
issue). A step whose receipt failed ends its flow (`abandoned`; the bench counts the receipt as
rejected, by code). A transaction refused at admission (other than `mempool_full` at `max`,
sent again) ends its flow too, and leaves a gap in its account's nonces: that account's later
transactions wait in the mempools until they expire and are reported lost.

Ids are known before the issue commits: a receivable is named "<debtor>.<nonce of the issue>"
(never reused: a nonce is spent once), its parts "<id>#0" and "<id>#1".

This module must never print; it signs only for the accounts of its own share.
"""

from __future__ import annotations

import heapq
import queue
from collections import deque
from typing import Any

from consortia.cluster.bench_client import SEND_INTERVAL_S, Sender
from consortia.cluster.bench_workloads import Flow, by_role, flow_call, new_flow
from consortia.identity.bench_accounts import account_name


class FlowSender(Sender):
    """A client that drives receivable flows (module docstring)."""

    # A step is sent once the one before it committed: a longer pause stretches each flow
    # toward its receivable's maturity.
    send_interval_s = SEND_INTERVAL_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles = by_role(self.accounts)
        self.ready: deque[Flow] = deque()  # flows whose next step may be sent
        self.maturing: list[tuple[int, int, Flow]] = []  # (maturity, order, flow): repay next
        self.waiting: dict[str, Flow] = {}  # a step's hash -> its flow
        self.started = self.completed = self.abandoned = 0
        self._order = 0  # ties between flows maturing at one height

    def own_accounts(self) -> list[int]:
        spec = self.spec
        first = spec.index * spec.account_count // spec.clients
        return list(range(first, (spec.index + 1) * spec.account_count // spec.clients))

    def plan(self) -> None:
        """Nothing to plan: flows are made as they go."""

    def signing(self) -> list[int]:
        """Every account of this client may sign a step."""
        return self.accounts

    def prepare(self) -> None:
        """Derive every key ahead (signing then costs only the signature)."""
        for account in self.accounts:
            self.signer(account)

    def finished(self) -> bool:
        return False

    def fresh(self, count: int) -> list[int]:
        indices = []
        for _ in range(count):
            if self.ready:
                flow = self.ready.popleft()
            else:
                flow = new_flow(self.rng, self.roles)
                self.started += 1
            indices.append(self._sign_step(flow))
        return indices

    def _sign_step(self, flow: Flow) -> int:
        if flow.step == 0:
            nonce = self.nonces[flow.debtor]
            flow.receivable_id = f"{account_name(flow.debtor)}.{nonce}"
            flow.maturity_height = int(self.shared.height.value) + self.spec.maturity_blocks
        signer, call = flow_call(flow)
        index = self.sign(signer, call)
        self.waiting[self.hashes[index]] = flow
        return index

    def tick(self) -> None:
        """Take in what became of the steps sent; release the flows that matured."""
        inbox = self.shared.settlements[self.spec.index]
        while True:
            try:
                settled = inbox.get_nowait()
            except queue.Empty:
                break
            for tx_hash, ok in settled:
                flow = self.waiting.pop(tx_hash, None)
                if flow is None:
                    continue
                if not ok:
                    self.abandoned += 1
                    continue
                flow.step += 1
                if flow.done:
                    self.completed += 1
                elif flow.kind == "repay":
                    self._order += 1
                    heapq.heappush(self.maturing, (flow.maturity_height, self._order, flow))
                else:
                    self.ready.append(flow)
        height = int(self.shared.height.value)
        while self.maturing and self.maturing[0][0] <= height:
            self.ready.append(heapq.heappop(self.maturing)[2])

    def on_refused(self, index: int, code: str) -> None:
        if self.waiting.pop(self.hashes[index], None) is not None:
            self.abandoned += 1

    def report(self) -> dict[str, Any]:
        return {
            **super().report(),
            "flows": {
                "started": self.started,
                "completed": self.completed,
                "abandoned": self.abandoned,
                "maturing": len(self.maturing),
            },
        }
