"""`consortia bench`: an open-loop load of signed transfers against a local cluster, measured
from the clients' side.

The load comes from C client processes (multiprocessing, apart from the nodes and from this
one). Each takes every C-th benchmark account (identity/bench_accounts.py), reads their
nonces, and signs all of its transactions before the clock starts: transfers of 1 fen from
each of its accounts in turn to the next benchmark account, each sender's nonces consecutive,
so no two transactions ever collide. Then, once every client is ready:

* at a fixed rate R, transaction j of client c is due at start + j / (R / C); every
  SEND_INTERVAL_S the client sends what has come due in one batch (POST /v1/txs, binary), each
  batch to the next node in turn, without waiting for earlier answers (open loop: a slow answer
  never delays the schedule);
* at `max`, each client sends batches as fast as the nodes take them, to the nodes in turn,
  while fewer than `window` admitted transactions wait for a block (so the load saturates
  the network without flooding its mempools); a batch entry refused with `mempool_full` is
  sent again later, and counted as failed only if it is still refused when the time is up.

This process follows the chain meanwhile: it reads each new block's receipts from node 0
(`GET /v1/blocks/{height}/receipts`) and matches them with what the clients report having
admitted. A transaction's latency runs until this process saw its block, from its due time
at a fixed rate (so the wait for the next send counts), from the moment its batch left at
`max`. When the time is up, it waits (at most `drain_s`) for every admitted transaction
to be committed or failed; what never shows up is `lost`.

Counts: `submitted` (sent at least once), `committed` (a successful receipt), `failed` (a
refused admission or a failed receipt, by code), `lost`; submitted = committed + failed +
lost. `tps` is the transactions committed during the measurement window (from the start to
`duration_s` later) per second of it. Each node's CPU (percent of one core, over the window)
and memory come from /proc/PID/stat and /proc/PID/status of the pids in the cluster's pid
files (the client processes' too), its round timeouts from its /metrics.

This module only reports, through `BenchProgress` and `BenchResult`; it must never print. The
master key of the benchmark accounts goes to the client processes it starts, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Final

import httpx

from consortia.client import AsyncClient, ChainInfo, ClientError, Signer
from consortia.client.sdk import BATCH_TRANSACTIONS_MAX
from consortia.cluster.home import ClusterHome, NodeEntry
from consortia.cluster.processes import running_pid
from consortia.errors import AccountKeyNotFoundError, BenchError, InvalidArgumentError
from consortia.identity.bench_accounts import (
    account_name,
    derive_private_key,
    open_bench_accounts,
)

WORKLOAD_TRANSFER: Final = "transfer"
CLIENTS_DEFAULT: Final = 2
WINDOW_DEFAULT: Final = 4000  # admitted transactions waiting for a block, at `max`
BATCH_DEFAULT: Final = 250  # transactions a request, at `max`
UNANSWERED_TRIES: Final = 3  # sends of a batch that got no answer, at a fixed rate
ERRORS_KEPT: Final = 5
REQUESTS_PER_CLIENT: Final = 2  # requests one client has in flight at once, at `max`
MAX_PRESIGN_PER_S: Final = 2500  # transactions signed ahead per second of a `max` run
DRAIN_S_DEFAULT: Final = 60.0
# Transactions expire this many blocks a second of the run (and drain, and a minute more) after
# the start, so an earlier run's leftovers (behind a nonce gap) leave the mempools in time.
EXPIRY_BLOCKS_PER_S: Final = 50
EXPIRY_AHEAD_MIN: Final = 1000
MEMPOOL_EMPTY_WAIT_S: Final = 10.0
AMOUNT: Final = 1  # fen a transfer
TICK_S: Final = 0.005  # how often a `max` client looks at its window
SEND_INTERVAL_S: Final = 0.02  # how often a fixed-rate client sends what has come due
FOLLOW_PAUSE_S: Final = 0.02
PROGRESS_S: Final = 0.25
NONCE_READS_AT_ONCE: Final = 16
REQUEST_TIMEOUT_S: Final = 120.0  # generous: an overloaded node answers late, not never


@dataclass(frozen=True, slots=True)
class BenchConfig:
    duration_s: float
    rate: float | None  # transactions a second in all; None for `max`
    clients: int = CLIENTS_DEFAULT
    accounts: int | None = None  # the first A benchmark accounts (default: all)
    window: int = WINDOW_DEFAULT
    batch: int = BATCH_DEFAULT
    transactions: int | None = None  # how many to sign ahead (default: rate x duration)
    drain_s: float = DRAIN_S_DEFAULT

    def check(self) -> None:
        if not self.duration_s > 0:
            raise InvalidArgumentError("--duration must be positive")
        if self.rate is not None and not self.rate > 0:
            raise InvalidArgumentError("--rate must be positive, or max")
        if not 1 <= self.clients <= 64:
            raise InvalidArgumentError("--clients must be 1 to 64")
        if not 1 <= self.batch <= BATCH_TRANSACTIONS_MAX:
            raise InvalidArgumentError(f"--batch must be 1 to {BATCH_TRANSACTIONS_MAX}")
        if self.window < 1 or (self.transactions is not None and self.transactions < 1):
            raise InvalidArgumentError("--window and --transactions must be positive")

    def presigned(self) -> int:
        if self.transactions is not None:
            return self.transactions
        per_s = self.rate if self.rate is not None else MAX_PRESIGN_PER_S
        return max(1, math.ceil(per_s * self.duration_s))


@dataclass(frozen=True, slots=True)
class BenchProgress:
    phase: str  # "signing", "running", "draining"
    elapsed_s: float
    duration_s: float
    submitted: int
    committed: int
    failed: int
    waiting: int  # admitted, not yet seen in a block
    height: int


@dataclass(frozen=True, slots=True)
class ProcessUse:
    name: str
    pid: int | None
    cpu_percent: float | None  # of one core, over the measurement window
    rss_mib: float | None  # at the end of the window
    peak_rss_mib: float | None  # the process's peak since it started (VmHWM)
    round_timeouts: int | None = None  # a node's round timers fired in the run (drain too)


@dataclass
class BenchResult:
    workload: str
    rate: float | None
    duration_s: float
    clients: int
    accounts: int
    nodes: int
    presigned: int
    presign_s: float
    submitted: int
    committed: int
    failed: int
    failed_by_code: dict[str, int]
    lost: int
    retried: int  # transactions sent again: after mempool_full (`max`), or no answer
    committed_in_window: int
    tps: float
    latency_ms: dict[str, float]
    send_lag_ms_max: float  # how late the clients sent against their schedule (fixed rate)
    exhausted: bool  # a `max` run used every pre-signed transaction before its end
    request_errors: list[str]  # the first few distinct errors of requests that got no answer
    blocks: int
    height_start: int
    height_end: int
    node_use: list[ProcessUse]
    client_use: list[ProcessUse]

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("node_use", "client_use")
        }
        result["rate"] = "max" if self.rate is None else self.rate
        result["nodes_resources"] = [_use_dict(use) for use in self.node_use]
        result["clients_resources"] = [_use_dict(use) for use in self.client_use]
        return result


def _use_dict(use: ProcessUse) -> dict[str, Any]:
    return {
        "name": use.name,
        "pid": use.pid,
        "cpu_percent": use.cpu_percent,
        "rss_mib": use.rss_mib,
        "peak_rss_mib": use.peak_rss_mib,
        **({} if use.round_timeouts is None else {"round_timeouts": use.round_timeouts}),
    }


# ---------------------------------------------------------------- /proc readings


_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds `pid` has used, from /proc/PID/stat; None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def memory_mib(pid: int) -> tuple[float | None, float | None]:
    """(resident, peak resident) MiB of `pid`, from /proc/PID/status."""
    found: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return None, None
    return found.get("VmRSS"), found.get("VmHWM")


@dataclass
class _Watched:
    name: str
    pid: int | None
    api_url: str | None = None  # a node's, to read its round timeouts
    cpu_start: float | None = None
    cpu_end: float | None = None
    rss: float | None = None
    peak: float | None = None
    timeouts_start: int | None = None
    timeouts_end: int | None = None

    def begin(self) -> None:
        self.cpu_start = None if self.pid is None else cpu_seconds(self.pid)

    def end(self) -> None:
        if self.pid is not None:
            self.cpu_end = cpu_seconds(self.pid)
            self.rss, self.peak = memory_mib(self.pid)

    def use(self, window_s: float) -> ProcessUse:
        cpu = None
        if self.cpu_start is not None and self.cpu_end is not None and window_s > 0:
            cpu = round(100 * (self.cpu_end - self.cpu_start) / window_s, 1)
        timeouts = None
        if self.timeouts_start is not None and self.timeouts_end is not None:
            timeouts = self.timeouts_end - self.timeouts_start
        return ProcessUse(
            self.name,
            self.pid,
            cpu,
            None if self.rss is None else round(self.rss, 1),
            None if self.peak is None else round(self.peak, 1),
            timeouts,
        )


TIMEOUTS_METRIC: Final = "consortia_round_timeouts_total"


async def _round_timeouts(http: httpx.AsyncClient, watched: Sequence[_Watched]) -> list[int | None]:
    """Each watched node's count of round timers fired, from its /metrics."""

    async def read(entry: _Watched) -> int | None:
        if entry.api_url is None:
            return None
        try:
            text = (await http.get(f"{entry.api_url}/metrics")).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(TIMEOUTS_METRIC + " "):
                return int(float(line.split()[1]))
        return None

    return list(await asyncio.gather(*(read(entry) for entry in watched)))


# ---------------------------------------------------------------- client processes


@dataclass(frozen=True, slots=True)
class _ClientSpec:
    index: int
    clients: int
    urls: tuple[str, ...]
    chain_id: str
    suite: str
    genesis_hash: bytes
    contract_versions: tuple[tuple[str, int], ...]
    master: bytes
    account_count: int
    transactions: int
    rate_per_s: float | None  # this client's share; None at `max`
    duration_s: float
    window: int
    batch: int
    expiry_height: int


@dataclass(slots=True)
class _Shared:
    """What the processes share: each client's sent and admitted counts (one writer each),
    the number of admitted transactions this process has seen settled, the start time."""

    sent: Any
    admitted: Any
    settled: Any
    start_at: Any
    start: Any
    stop: Any
    messages: Any


def _load_client(url: str) -> AsyncClient:
    """A client whose requests are all sent at once, however many wait for an answer: a pool
    limit would hold requests back (open loop) and time them out unsent."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    return AsyncClient(
        url, timeout_s=REQUEST_TIMEOUT_S, transport=httpx.AsyncHTTPTransport(limits=limits)
    )


def _client_main(spec: _ClientSpec, shared: _Shared) -> None:
    """A client process: sign, report ready, wait for the start, send, report done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it through `shared.stop`
    try:
        asyncio.run(_Client(spec, shared).main())
    except BaseException:
        shared.messages.put(("error", spec.index, traceback.format_exc(limit=8)))


class _Client:
    def __init__(self, spec: _ClientSpec, shared: _Shared) -> None:
        self.spec, self.shared = spec, shared
        self.accounts = list(range(spec.index, spec.account_count, spec.clients))
        self.nonces: dict[int, int] = {}
        self.raws: list[bytes] = []
        self.hashes: list[str] = []
        self.sent = 0  # transactions sent at least once
        self.retry: list[int] = []  # refused with mempool_full, to send again (`max`)
        self.retried = 0
        self.refused: Counter[str] = Counter()
        self.lag_s = 0.0
        self.exhausted = False
        self.requests = 0  # in flight
        self.errors: list[str] = []  # the first few distinct request errors
        self.start = 0.0
        self.node = spec.index

    async def main(self) -> None:
        spec, shared = self.spec, self.shared
        clients = [_load_client(url) for url in spec.urls]
        try:
            await self.read_nonces(clients)
            started = time.monotonic()
            self.presign()
            shared.messages.put(("ready", spec.index, time.monotonic() - started, os.getpid()))
            while not shared.start.is_set():  # connections stay open meanwhile
                if shared.stop.is_set():
                    return
                await asyncio.sleep(0.001)
            await self.send_all(clients)
        finally:
            for client in clients:
                await client.close()
        shared.messages.put(("done", spec.index, self.report()))

    async def read_nonces(self, clients: list[AsyncClient]) -> None:
        gate = asyncio.Semaphore(NONCE_READS_AT_ONCE)

        async def read(position: int, account: int) -> None:
            async with gate:
                client = clients[position % len(clients)]
                record = await client.account(account_name(account))
                self.nonces[account] = int(record["nonce"])

        await asyncio.gather(
            *(read(position, account) for position, account in enumerate(self.accounts))
        )

    def presign(self) -> None:
        spec = self.spec
        chain = ChainInfo(
            spec.chain_id, spec.suite, spec.genesis_hash, dict(spec.contract_versions)
        )
        signers = [
            Signer(
                account_name(account),
                derive_private_key(spec.suite, spec.master, account),
                chain,
            )
            for account in self.accounts
        ]
        count = len(self.accounts)
        for j in range(spec.transactions):
            position = j % count
            account = self.accounts[position]
            target = account_name((account + 1) % spec.account_count)
            raw, tx_hash = signers[position].signed(
                "asset",
                "transfer",
                {"to": target, "amount": AMOUNT, "currency": "CNY"},
                nonce=self.nonces[account] + j // count,
                expiry_height=spec.expiry_height,
            )
            self.raws.append(raw)
            self.hashes.append(tx_hash)

    async def send_all(self, clients: list[AsyncClient]) -> None:
        spec = self.spec
        tasks: set[asyncio.Task[None]] = set()
        start = self.start = float(self.shared.start_at.value)
        end = start + spec.duration_s
        tick = TICK_S if spec.rate_per_s is None else SEND_INTERVAL_S
        while time.monotonic() < start:
            await asyncio.sleep(0.001)
        while not self.shared.stop.is_set():
            now = time.monotonic()
            if now >= end:
                if spec.rate_per_s is not None:  # what came due since the last send
                    self._send_due(clients, tasks, start, end)
                break
            if spec.rate_per_s is not None:
                self._send_due(clients, tasks, start, now)
                if self.sent >= len(self.raws):
                    break
            elif not self._send_more(clients, tasks):
                break
            await asyncio.sleep(max(0.0, min(tick, end - time.monotonic())))
        if tasks:
            await asyncio.gather(*tasks)
        if self.retry:
            self.refused["mempool_full"] += len(self.retry)
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
        due = min(len(self.raws), math.ceil((now - start) * rate))
        while self.sent < due:
            first = self.sent
            last = min(due, first + BATCH_TRANSACTIONS_MAX)
            self.lag_s = max(self.lag_s, now - (start + first / rate))
            self.sent = last
            self._launch(clients, tasks, list(range(first, last)), retry=False)
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
            if self.sent >= len(self.raws):
                self.exhausted = True
                return bool(self.requests or self.retry)
            first, last = self.sent, min(len(self.raws), self.sent + spec.batch)
            self.sent = last
            self.shared.sent[spec.index] = self.sent
            self._launch(clients, tasks, list(range(first, last)), retry=False)
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
        admitted: list[tuple[str, float]] = []
        refused: Counter[str] = Counter()
        results: list[dict[str, Any]] = []
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
                    break
        finally:
            self.requests -= 1
        for i, result in zip(indices, results, strict=False):
            code = str(result["error"]["code"]) if "error" in result else None
            if code is None or (retry and code in ("duplicate", "stale_nonce")):
                due = sent_at if rate is None else self.start + i / rate
                admitted.append((self.hashes[i], due))
            elif at_max and code == "mempool_full":
                self.retry.append(i)
            else:
                refused[code] += 1
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


# ---------------------------------------------------------------- this process


@dataclass
class _Tally:
    window_end: float = math.inf
    pending: dict[str, float] = field(default_factory=dict)  # admitted: hash -> sent at
    early: dict[str, tuple[float, bool, str]] = field(default_factory=dict)  # seen first
    committed: int = 0
    committed_in_window: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    height: int = 0
    blocks_in_window: int = 0

    def admitted(self, tx_hash: str, sent_at: float) -> bool:
        """Note an admitted transaction; True when it had already been seen in a block."""
        seen = self.early.pop(tx_hash, None)
        if seen is None:
            self.pending[tx_hash] = sent_at
            return False
        self._settle(sent_at, *seen)
        return True

    def seen(self, tx_hash: str, at: float, ok: bool, code: str) -> bool:
        """Note a transaction in a block; True when it was one of ours."""
        sent_at = self.pending.pop(tx_hash, None)
        if sent_at is None:
            self.early[tx_hash] = (at, ok, code)
            return False
        self._settle(sent_at, at, ok, code)
        return True

    def _settle(self, sent_at: float, at: float, ok: bool, code: str) -> None:
        if ok:
            self.committed += 1
            self.latencies.append(at - sent_at)
            if at <= self.window_end:
                self.committed_in_window += 1
        else:
            self.failed[code] += 1


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    return {
        "p50": round(at(0.50) * 1000, 1),
        "p95": round(at(0.95) * 1000, 1),
        "p99": round(at(0.99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
        "mean": round(sum(ordered) / len(ordered) * 1000, 1),
    }


class Bench:
    """One run of the transfer workload against the cluster in `home` (module docstring)."""

    def __init__(
        self,
        home: ClusterHome,
        config: BenchConfig,
        *,
        master: bytes,
        account_count: int,
        on_progress: Callable[[BenchProgress], None] | None = None,
    ) -> None:
        config.check()
        accounts = account_count if config.accounts is None else config.accounts
        if accounts > account_count:
            raise AccountKeyNotFoundError(
                f"--accounts {accounts}: the cluster in {home.root} has {account_count}"
                " benchmark accounts"
            )
        if accounts < config.clients:
            raise InvalidArgumentError("each client needs an account: --accounts >= --clients")
        self.home, self.config, self.accounts = home, config, accounts
        self._master = master
        self._on_progress = on_progress or (lambda _progress: None)
        self._tally = _Tally()
        self._context = multiprocessing.get_context("spawn")
        self._settled = 0  # admitted transactions seen in a block
        self._ready: dict[int, tuple[float, int]] = {}  # client: (signing seconds, pid)
        self._reports: dict[int, dict[str, Any]] = {}
        self._refused: Counter[str] = Counter()
        self._shared: Any = None
        self._processes: list[SpawnProcess] = []

    def run(self) -> BenchResult:
        return asyncio.run(self._run())

    def _expiry_ahead(self) -> int:
        seconds = self.config.duration_s + self.config.drain_s + 60
        return max(EXPIRY_AHEAD_MIN, math.ceil(seconds * EXPIRY_BLOCKS_PER_S))

    async def _check_mempools_empty(self, nodes: list[NodeEntry]) -> None:
        """Wait a little for the nodes' mempools to empty; BenchError if they keep
        transactions (an earlier run's, stuck behind a nonce gap, would collide with this
        run's nonces)."""
        deadline = time.monotonic() + MEMPOOL_EMPTY_WAIT_S
        clients = [AsyncClient(node.api_url, timeout_s=REQUEST_TIMEOUT_S) for node in nodes]
        try:
            while True:
                statuses = await asyncio.gather(*(client.status() for client in clients))
                waiting = sum(int(status["mempool"]["transactions"]) for status in statuses)
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the nodes' mempools still hold {waiting} transactions (an earlier"
                        " run's, behind a lost one?); they would collide with this run's"
                        " nonces. Restart the cluster to empty them: consortia cluster down"
                        f" --home {self.home.root}; consortia cluster up --home {self.home.root}"
                    )
                await asyncio.sleep(0.5)
        except ClientError as error:
            raise BenchError(f"a node does not answer: {error}") from None
        finally:
            for client in clients:
                await client.close()

    async def _run(self) -> BenchResult:
        config, context = self.config, self.context
        nodes = [node for node in self.home.nodes if running_pid(self.home, node) is not None]
        if not nodes:
            raise BenchError(f"no node of {self.home.root} is running (cluster up first)")
        follower = AsyncClient(nodes[0].api_url, timeout_s=REQUEST_TIMEOUT_S)
        try:
            status = await follower.status()
        except ClientError as error:
            raise BenchError(f"{nodes[0].name} does not answer: {error}") from None
        chain = ChainInfo.from_status(status)
        await self._check_mempools_empty(nodes)
        shared = _Shared(
            sent=context.Array("q", config.clients, lock=False),
            admitted=context.Array("q", config.clients, lock=False),
            settled=context.Value("q", 0, lock=False),
            start_at=context.Value("d", 0.0, lock=False),
            start=context.Event(),
            stop=context.Event(),
            messages=context.Queue(),
        )
        total = config.presigned()
        processes = [
            context.Process(
                target=_client_main,
                args=(self._spec(index, nodes, chain, status, total), shared),
                name=f"consortia-bench-client-{index}",
                daemon=True,
            )
            for index in range(config.clients)
        ]
        try:
            for process in processes:
                process.start()
            return await self._drive(nodes, follower, shared, processes, total)
        finally:
            shared.stop.set()
            await follower.close()
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=5)

    @property
    def context(self) -> Any:
        return self._context

    def _spec(
        self,
        index: int,
        nodes: list[NodeEntry],
        chain: ChainInfo,
        status: dict[str, Any],
        total: int,
    ) -> _ClientSpec:
        config = self.config
        share = total // config.clients + (1 if index < total % config.clients else 0)
        return _ClientSpec(
            index=index,
            clients=config.clients,
            urls=tuple(node.api_url for node in nodes),
            chain_id=chain.chain_id,
            suite=chain.suite,
            genesis_hash=chain.genesis_hash,
            contract_versions=tuple(sorted(chain.contract_versions.items())),
            master=self._master,
            account_count=self.accounts,
            transactions=share,
            rate_per_s=None if config.rate is None else config.rate / config.clients,
            duration_s=config.duration_s,
            window=config.window,
            batch=config.batch,
            expiry_height=int(status["height"]) + self._expiry_ahead(),
        )

    async def _drive(
        self,
        nodes: list[NodeEntry],
        follower: AsyncClient,
        shared: _Shared,
        processes: list[SpawnProcess],
        total: int,
    ) -> BenchResult:
        self._shared, self._processes = shared, processes
        presign_s = await self._wait_ready()
        watched = [
            _Watched(node.name, running_pid(self.home, node), node.api_url) for node in nodes
        ]
        clients = [_Watched(f"client {i}", self._ready[i][1]) for i in range(len(processes))]
        clients.append(_Watched("bench", os.getpid()))  # this process: following, matching
        height_start = int((await follower.status())["height"])
        self._tally.height = height_start
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
            for entry, count in zip(watched, await _round_timeouts(http, watched), strict=True):
                entry.timeouts_start = count
            for entry in (*watched, *clients):
                entry.begin()
            blocks = await self._measure(follower, (*watched, *clients), height_start)
            for entry, count in zip(watched, await _round_timeouts(http, watched), strict=True):
                entry.timeouts_end = count
        config, tally, reports = self.config, self._tally, self._reports.values()
        failed = tally.failed + self._refused
        return BenchResult(
            workload=WORKLOAD_TRANSFER,
            rate=config.rate,
            duration_s=config.duration_s,
            clients=config.clients,
            accounts=self.accounts,
            nodes=len(nodes),
            presigned=total,
            presign_s=round(presign_s, 2),
            submitted=sum(int(report["sent"]) for report in reports),
            committed=tally.committed,
            failed=sum(failed.values()),
            failed_by_code=dict(sorted(failed.items())),
            lost=len(tally.pending),
            retried=sum(int(report["retried"]) for report in reports),
            committed_in_window=tally.committed_in_window,
            tps=round(tally.committed_in_window / config.duration_s, 1),
            latency_ms=_percentiles(tally.latencies),
            send_lag_ms_max=round(max(float(report["lag_s"]) for report in reports) * 1000, 1),
            exhausted=any(report["exhausted"] for report in reports),
            request_errors=sorted({e for r in reports for e in r["errors"]})[:ERRORS_KEPT],
            blocks=blocks,
            height_start=height_start,
            height_end=tally.height,
            node_use=[entry.use(config.duration_s) for entry in watched],
            client_use=[entry.use(config.duration_s) for entry in clients],
        )

    def _drain_messages(self) -> None:
        """Take in what the clients reported since the last call."""
        shared, tally = self._shared, self._tally
        while True:
            try:
                message = shared.messages.get_nowait()
            except queue.Empty:
                break
            kind, index = message[0], message[1]
            if kind == "ready":
                self._ready[index] = (message[2], message[3])
            elif kind == "batch":
                for tx_hash, sent_at in message[2]:
                    if tally.admitted(tx_hash, sent_at):
                        self._settled += 1
                self._refused.update(message[3])
            elif kind == "done":
                self._reports[index] = message[2]
            elif kind == "error":
                raise BenchError(f"client {index} failed:\n{message[2]}")
        shared.settled.value = self._settled

    def _progress(self, phase: str, started: float) -> None:
        tally = self._tally
        self._on_progress(
            BenchProgress(
                phase,
                time.monotonic() - started,
                self.config.duration_s,
                sum(self._shared.sent[:]),
                tally.committed,
                sum(tally.failed.values()) + sum(self._refused.values()),
                len(tally.pending),
                tally.height,
            )
        )

    async def _wait_ready(self) -> float:
        """Wait until every client has signed its transactions; the longest it took."""
        started = time.monotonic()
        while len(self._ready) < len(self._processes):
            self._drain_messages()
            for process in self._processes:
                if process.exitcode is not None and process.exitcode != 0:
                    raise BenchError(f"{process.name} exited with status {process.exitcode}")
            self._progress("signing", started)
            await asyncio.sleep(PROGRESS_S)
        return max(seconds for seconds, _pid in self._ready.values())

    async def _measure(
        self, follower: AsyncClient, watched: Sequence[_Watched], height_start: int
    ) -> int:
        """Start the clients, follow the chain through the window and the drain; the number
        of blocks committed during the window."""
        config, tally, shared = self.config, self._tally, self._shared
        start = time.monotonic() + 0.05
        tally.window_end = start + config.duration_s
        shared.start_at.value = start
        shared.start.set()
        following = asyncio.get_running_loop().create_task(self._follow(follower))
        window_closed, last_progress, blocks = False, 0.0, 0
        drain_deadline = math.inf
        try:
            while True:
                self._drain_messages()
                now = time.monotonic()
                if not window_closed and now >= tally.window_end:
                    window_closed = True
                    for entry in watched:
                        entry.end()
                    blocks = tally.height - height_start
                    drain_deadline = now + config.drain_s
                if following.done():
                    following.result()  # raises what stopped it
                settled = not tally.pending or now >= drain_deadline
                if window_closed and len(self._reports) == len(self._processes) and settled:
                    break
                if now - last_progress >= PROGRESS_S:
                    last_progress = now
                    self._progress("draining" if window_closed else "running", start)
                await asyncio.sleep(0.01)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await following
        self._progress("done", start)
        return blocks

    async def _follow(self, follower: AsyncClient) -> None:
        """Read every new block's receipts from the followed node as soon as it has them."""
        tally = self._tally
        while True:
            try:
                block = await follower.block_receipts(tally.height + 1)
            except ClientError as error:
                if error.code not in ("not_found", "unreachable"):
                    raise
                await asyncio.sleep(FOLLOW_PAUSE_S)
                continue
            at = time.monotonic()
            tally.height = int(block["height"])
            for receipt in block["receipts"]:
                if tally.seen(receipt["tx_hash"], at, bool(receipt["ok"]), str(receipt["code"])):
                    self._settled += 1


def open_bench(
    root: Path,
    passphrase: str,
    config: BenchConfig,
    on_progress: Callable[[BenchProgress], None] | None = None,
) -> Bench:
    """A benchmark of the cluster in `root`, its benchmark accounts opened with `passphrase`."""
    home = ClusterHome.open(root)
    accounts = open_bench_accounts(home.root, passphrase)
    if accounts is None:
        raise AccountKeyNotFoundError(
            f"the cluster in {home.root} has no benchmark accounts; make a new cluster with"
            " them: consortia cluster up --home NEW_DIR --accounts 1000"
        )
    return Bench(
        home,
        config,
        master=accounts.master_key(),
        account_count=accounts.count,
        on_progress=on_progress,
    )
