"""A `consortia bench` client process that sends transactions, and what it shares with the
bench process.

A client takes its share of the benchmark accounts (`Sender.own_accounts`: every C-th, for
client c of C). For a pre-signed workload (transfer, smallbank) it chooses all of its
transactions, reads the nonces of the accounts that sign them (of a large state, far fewer
than its share) and signs them before the clock starts, each sender's nonces consecutive. Then,
once every client is ready:

* at a fixed rate R, transaction j of client c is due at start + j / (R / C); every
  `send_interval_s` (PRESIGNED_SEND_INTERVAL_S; a flow's steps, which wait for each other,
  SEND_INTERVAL_S) the client sends what has come due in one batch (POST /v1/txs, binary),
  each batch to the next node in turn, without waiting for earlier answers (open loop: a slow
  answer never delays the schedule);
* at `max`, it sends batches as fast as the nodes take them, to the nodes in turn, while fewer
  than `window` admitted transactions (of every client) wait for a block; a batch entry refused
  with `mempool_full` is sent again later, and counted as failed only if it is still refused
  when the time is up.

It reports each batch's admitted transactions (hash, the time its latency counts from, its
kind) and refusals (by code) to the bench process, which follows the chain. A subclass makes
its transactions as it goes instead (`fresh`; the receivable flows, bench_flows.py).

This module must never print; the master key of the benchmark accounts reaches it in its
`ClientSpec` and never leaves the process's memory.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from consortia.client import AsyncClient, ChainInfo, ClientError, Signer
from consortia.client.sdk import BATCH_TRANSACTIONS_MAX, NONCES_PER_REQUEST, batches_of
from consortia.cluster.bench_workloads import Call, client_rng, presigned_calls
from consortia.identity.bench_accounts import account_name, derive_private_key

UNANSWERED_TRIES: Final = 3  # sends of a batch that got no answer, at a fixed rate
ERRORS_KEPT: Final = 5
REQUESTS_PER_CLIENT: Final = 2  # requests one client has in flight at once, at `max`
TICK_S: Final = 0.005  # how often a `max` client looks at its window
SEND_INTERVAL_S: Final = 0.02  # how often a fixed-rate client sends what has come due
# ... when its transactions are pre-signed: each send is an HTTP request, and at 20 ms the two
# clients of a 1,470-a-second run took 29% of a core from the nodes (docs/operations.md).
PRESIGNED_SEND_INTERVAL_S: Final = 0.05
NONCE_READ_ATTEMPTS: Final = 4  # a nonce read whose connection dropped is retried
NONCE_READS_AT_ONCE: Final = 4  # requests of NONCES_PER_REQUEST accounts
REQUEST_TIMEOUT_S: Final = 120.0  # generous: an overloaded node answers late, not never


@dataclass(frozen=True, slots=True)
class ClientSpec:
    index: int
    clients: int
    workload: str
    seed: int
    urls: tuple[str, ...]
    chain_id: str
    suite: str
    genesis_hash: bytes
    contract_versions: tuple[tuple[str, int], ...]
    master: bytes
    account_count: int
    transactions: int  # to pre-sign (pre-signed workloads)
    rate_per_s: float | None  # this client's share; None at `max`
    duration_s: float
    window: int
    batch: int
    expiry_height: int
    maturity_blocks: int  # receivable: from the height the issuer knows to maturity
    genesis_json: bytes = b""  # query: the genesis a light client checks reads from

    def chain(self) -> ChainInfo:
        return ChainInfo(self.chain_id, self.suite, self.genesis_hash, dict(self.contract_versions))


@dataclass(slots=True)
class Shared:
    """What the processes share: each client's sent and admitted counts (one writer each),
    the number of admitted transactions the bench process has seen settled, the height it
    has seen, the start time, and the queues: `messages` from the clients, `settlements` to
    each client (what became of its transactions, for the workloads that wait for them)."""

    sent: Any
    admitted: Any
    settled: Any
    height: Any
    start_at: Any
    start: Any
    stop: Any
    messages: Any
    settlements: list[Any]


def load_client(url: str) -> AsyncClient:
    """A client whose requests are all sent at once, however many wait for an answer: a pool
    limit would hold requests back (open loop) and time them out unsent."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    return AsyncClient(
        url, timeout_s=REQUEST_TIMEOUT_S, transport=httpx.AsyncHTTPTransport(limits=limits)
    )


def run_client(client: Any, index: int, messages: Any) -> None:
    """Run a client object's `main` in this process; report a crash to the bench process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it through `shared.stop`
    try:
        asyncio.run(client.main())
    except BaseException:
        messages.put(("error", index, traceback.format_exc(limit=8)))


async def wait_start(shared: Shared) -> bool:
    """Wait for the common start; False when the bench stopped first."""
    while not shared.start.is_set():  # connections stay open meanwhile
        if shared.stop.is_set():
            return False
        await asyncio.sleep(0.001)
    return True


class Sender:
    """A client that sends transactions (module docstring): pre-signed ones here."""

    send_interval_s: float = PRESIGNED_SEND_INTERVAL_S

    def __init__(self, spec: ClientSpec, shared: Shared) -> None:
        self.spec, self.shared = spec, shared
        self.accounts = self.own_accounts()
        self.rng = client_rng(spec.seed, spec.index)
        self.nonces: dict[int, int] = {}  # account: the next nonce to sign with
        self.raws: list[bytes] = []
        self.hashes: list[str] = []
        self.kinds: list[str] = []
        self.sent = 0  # transactions sent at least once: indices 0 .. sent - 1
        self.retry: list[int] = []  # refused with mempool_full, to send again (`max`)
        self.retried = 0
        self.refused: Counter[str] = Counter()
        self.lag_s = 0.0
        self.exhausted = False
        self.requests = 0  # in flight
        self.errors: list[str] = []  # the first few distinct request errors
        self.start = 0.0
        self.node = spec.index
        self.signers: dict[int, Signer] = {}
        self.planned: list[tuple[int, Call]] = []  # (signer, call), until signed

    def own_accounts(self) -> list[int]:
        spec = self.spec
        return list(range(spec.index, spec.account_count, spec.clients))

    async def main(self) -> None:
        spec, shared = self.spec, self.shared
        clients = [load_client(url) for url in spec.urls]
        try:
            self.plan()
            await self.read_nonces(clients)
            started = time.monotonic()
            self.prepare()
            shared.messages.put(("ready", spec.index, time.monotonic() - started, os.getpid()))
            if not await wait_start(shared):
                return
            await self.send_all(clients)
        finally:
            for client in clients:
                await client.close()
        shared.messages.put(("done", spec.index, self.report()))

    async def read_nonces(self, clients: list[AsyncClient]) -> None:
        """The next nonce of every account that signs here, NONCES_PER_REQUEST a request,
        the requests spread over the nodes."""
        gate = asyncio.Semaphore(NONCE_READS_AT_ONCE)

        async def read(position: int, accounts: Sequence[int]) -> None:
            names = [account_name(account) for account in accounts]
            async with gate:
                for attempt in range(NONCE_READ_ATTEMPTS):
                    # A dropped connection is asked again, of the next node.
                    client = clients[(position + attempt) % len(clients)]
                    try:
                        nonces = await client.nonces(names)
                    except ClientError as error:
                        if error.code != "unreachable" or attempt + 1 == NONCE_READ_ATTEMPTS:
                            raise
                        await asyncio.sleep(0.1 * (attempt + 1))
                        continue
                    for account, name in zip(accounts, names, strict=True):
                        nonce = nonces.get(name)
                        if nonce is None:
                            raise ClientError("not_found", f"no account {name!r}")
                        self.nonces[account] = int(nonce)
                    return

        chunks = batches_of(self.signing(), NONCES_PER_REQUEST)
        await asyncio.gather(*(read(position, chunk) for position, chunk in enumerate(chunks)))

    def signer(self, account: int) -> Signer:
        signer = self.signers.get(account)
        if signer is None:
            spec = self.spec
            key = derive_private_key(spec.suite, spec.master, account)
            signer = self.signers[account] = Signer(account_name(account), key, spec.chain())
        return signer

    def sign(self, account: int, call: Call) -> int:
        """Sign `call` for `account` with its next nonce; the new transaction's index."""
        nonce = self.nonces[account]
        self.nonces[account] = nonce + 1
        raw, tx_hash = self.signer(account).signed(
            call.contract,
            call.method,
            call.args,
            nonce=nonce,
            expiry_height=self.spec.expiry_height,
        )
        self.raws.append(raw)
        self.hashes.append(tx_hash)
        self.kinds.append(call.kind)
        return len(self.raws) - 1

    def plan(self) -> None:
        """Choose every transaction ahead (who signs it, what it calls)."""
        spec = self.spec
        self.planned = [
            (self.accounts[position], call)
            for position, call in presigned_calls(
                spec.workload, self.accounts, spec.account_count, spec.transactions, self.rng
            )
        ]

    def signing(self) -> list[int]:
        """The accounts whose nonces this client needs: those that sign a planned
        transaction (of a large state, far fewer than its share of the accounts)."""
        return sorted({account for account, _call in self.planned})

    def prepare(self) -> None:
        """Sign every planned transaction."""
        for account, call in self.planned:
            self.sign(account, call)
        self.planned = []

    # ------------------------------------------------------------ what a subclass changes

    def fresh(self, count: int) -> list[int]:
        """Up to `count` transactions never sent (their indices, in order from `sent`)."""
        return list(range(self.sent, min(len(self.raws), self.sent + count)))

    def finished(self) -> bool:
        """Whether nothing is left to send (at a fixed rate: stop early)."""
        return self.sent >= len(self.raws)

    def tick(self) -> None:
        """Called before each round of sending."""

    def on_refused(self, index: int, code: str) -> None:
        """Transaction `index` was refused for good (it will not be committed)."""

    # ------------------------------------------------------------ sending

    async def send_all(self, clients: list[AsyncClient]) -> None:
        spec = self.spec
        tasks: set[asyncio.Task[None]] = set()
        start = self.start = float(self.shared.start_at.value)
        end = start + spec.duration_s
        tick = TICK_S if spec.rate_per_s is None else self.send_interval_s
        while time.monotonic() < start:
            await asyncio.sleep(0.001)
        while not self.shared.stop.is_set():
            self.tick()
            now = time.monotonic()
            if now >= end:
                if spec.rate_per_s is not None:  # what came due since the last send
                    self._send_due(clients, tasks, start, end)
                break
            if spec.rate_per_s is not None:
                self._send_due(clients, tasks, start, now)
                if self.finished():
                    break
            elif not self._send_more(clients, tasks):
                break
            await asyncio.sleep(max(0.0, min(tick, end - time.monotonic())))
        if tasks:
            await asyncio.gather(*tasks)
        if self.retry:
            self.refused["mempool_full"] += len(self.retry)
            for index in self.retry:
                self.on_refused(index, "mempool_full")
            self.retry.clear()

    def _send_due(
        self,
        clients: list[AsyncClient],
        tasks: set[asyncio.Task[None]],
        start: float,
        now: float,
    ) -> None:
        rate = self.spec.rate_per_s
        assert rate is not None
        due = math.ceil((now - start) * rate)
        while self.sent < due:
            indices = self.fresh(min(due - self.sent, BATCH_TRANSACTIONS_MAX))
            if not indices:
                break
            self.lag_s = max(self.lag_s, now - (start + indices[0] / rate))
            self.sent = indices[-1] + 1
            self._launch(clients, tasks, indices, retry=False)
        self.shared.sent[self.spec.index] = self.sent

    def _send_more(self, clients: list[AsyncClient], tasks: set[asyncio.Task[None]]) -> bool:
        """At `max`: launch batches while the window allows; False once nothing is left."""
        spec = self.spec
        while self.requests < REQUESTS_PER_CLIENT:
            waiting = sum(self.shared.admitted[:]) - int(self.shared.settled.value)
            if waiting + self.requests * spec.batch >= spec.window:
                return True
            if self.retry:
                indices, self.retry = self.retry[: spec.batch], self.retry[spec.batch :]
                self.retried += len(indices)
                self._launch(clients, tasks, indices, retry=True)
                continue
            indices = self.fresh(spec.batch)
            if not indices:
                self.exhausted = True
                return bool(self.requests or self.retry)
            self.sent = indices[-1] + 1
            self.shared.sent[spec.index] = self.sent
            self._launch(clients, tasks, indices, retry=False)
        return True

    def _launch(
        self,
        clients: list[AsyncClient],
        tasks: set[asyncio.Task[None]],
        indices: list[int],
        *,
        retry: bool,
    ) -> None:
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self._post(clients, indices, retry=retry))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _post(self, clients: list[AsyncClient], indices: list[int], *, retry: bool) -> None:
        """Send one batch to the next node; report what was admitted with the time its latency
        counts from: at a fixed rate each transaction's due time, at `max` the moment the
        batch left. A batch that got no answer is sent again to the next node (up to
        UNANSWERED_TRIES times at a fixed rate; at `max` with the other re-sends): sending a
        signed transaction twice is harmless, and on a re-send `duplicate` (it was admitted)
        or `stale_nonce` (it was committed: nobody else signs with these nonces) counts as
        admitted."""
        rate = self.spec.rate_per_s
        at_max = rate is None
        admitted: list[tuple[str, float, str]] = []
        refused: Counter[str] = Counter()
        results: list[dict[str, Any]] = []
        sent_at = time.monotonic()
        try:
            for attempt in range(UNANSWERED_TRIES):
                client = clients[self.node % len(clients)]
                self.node += 1
                sent_at = time.monotonic()
                try:
                    results = await client.submit_many([self.raws[i] for i in indices])
                    break
                except ClientError as error:
                    self._note_error(error)
                    if at_max:
                        self.retry.extend(indices)
                    elif attempt + 1 < UNANSWERED_TRIES and error.code == "unreachable":
                        self.retried += len(indices)
                        retry = True
                        continue
                    else:
                        refused[error.code] += len(indices)
                        for i in indices:
                            self.on_refused(i, error.code)
                    break
        finally:
            self.requests -= 1
        for i, result in zip(indices, results, strict=False):
            code = str(result["error"]["code"]) if "error" in result else None
            if code is None or (retry and code in ("duplicate", "stale_nonce")):
                due = sent_at if rate is None else self.start + i / rate
                admitted.append((self.hashes[i], due, self.kinds[i]))
            elif at_max and code == "mempool_full":
                self.retry.append(i)
            else:
                refused[code] += 1
                self.on_refused(i, code)
        self.refused.update(refused)
        self.shared.admitted[self.spec.index] += len(admitted)
        self.shared.messages.put(("batch", self.spec.index, admitted, dict(refused)))

    def _note_error(self, error: ClientError) -> None:
        text = f"{error.code}: {error.message}"[:200]
        if text not in self.errors and len(self.errors) < ERRORS_KEPT:
            self.errors.append(text)

    def report(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "lag_s": self.lag_s,
            "exhausted": self.exhausted,
            "errors": self.errors,
        }
