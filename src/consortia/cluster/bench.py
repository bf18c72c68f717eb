"""`consortia bench`: a load of signed transactions (or reads) against a local cluster, from
client processes, measured from the clients' side; the orchestration and the report.

The workloads (bench_workloads.py): `transfer` and `smallbank` are pre-signed and sent open
loop (bench_client.py), `receivable` runs closed chains of steps, many flows in parallel
(bench_flows.py), `query` reads accounts (bench_reads.py). This module starts C client
processes (multiprocessing, spawn: apart from the nodes and from this one), waits until each is
ready (signed), starts them all at once, and meanwhile follows the chain: told of each new
block by node 0's block stream, it reads the block's receipts
(`GET /v1/blocks/{height}/receipts`) and matches them with what the clients report having
admitted; to the receivable clients it passes on what became of each of their transactions,
and to all the height it has seen. A transaction's latency runs until this process saw its
block, from its due time at a fixed rate (so the wait for the next send counts), from the
moment its batch left at `max`. When the time is up, it waits (at most `drain_s`) for every
admitted transaction to be committed; what never shows up is `lost`.

Counts: `submitted` (sent at least once), `committed` (in a block, whatever its receipt),
`rejected` (committed with a failed receipt: a business rule said no, by code; part of
`committed`), `failed` (refused at admission, by code: never committed), `lost`; submitted =
committed + failed + lost. `tps` is the transactions committed during the measurement window
(from the start to `duration_s` later) per second of it. `by_kind` splits committed and
rejected by transaction type or flow step. Each process's CPU and memory: bench_report.py.

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
import time
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Final

import httpx

from consortia.client import AsyncClient, ChainInfo, ClientError, Reconnect
from consortia.cluster.bench_client import (
    ERRORS_KEPT,
    REQUEST_TIMEOUT_S,
    ClientSpec,
    Sender,
    Shared,
    run_client,
)
from consortia.cluster.bench_config import (
    BATCH_DEFAULT,
    DRAIN_S_DEFAULT,
    WINDOW_DEFAULT,
    BenchConfig,
    BenchProgress,
    default_clients,
)
from consortia.cluster.bench_flows import FlowSender
from consortia.cluster.bench_reads import Reader
from consortia.cluster.bench_report import (
    BenchResult,
    ProcessUse,
    Tally,
    Watched,
    add_read_figures,
    per_second,
    percentiles,
    round_timeouts,
)
from consortia.cluster.bench_workloads import (
    MATURITY_BLOCKS_DEFAULT,
    WORKLOAD_QUERY,
    WORKLOAD_RECEIVABLE,
    WORKLOAD_SMALLBANK,
    WORKLOAD_TRANSFER,
    WORKLOADS,
)
from consortia.cluster.home import ClusterHome, NodeEntry
from consortia.cluster.processes import running_pid
from consortia.errors import AccountKeyNotFoundError, BenchError
from consortia.identity import layout
from consortia.identity.bench_accounts import open_bench_accounts

# Transactions expire this many blocks a second of the run (and drain, and a minute more) after
# the start, so an earlier run's leftovers (behind a nonce gap) leave the mempools in time.
EXPIRY_BLOCKS_PER_S: Final = 50
EXPIRY_AHEAD_MIN: Final = 1000
MEMPOOL_EMPTY_WAIT_S: Final = 10.0
FOLLOW_PAUSE_S: Final = 0.02
# The block stream the bench follows: a dropped connection is opened again at once, a few times.
FOLLOW_RECONNECT: Final = Reconnect(attempts=3, backoff_s=0.02, backoff_s_max=0.2)
PROGRESS_S: Final = 0.25

__all__ = [
    "BATCH_DEFAULT",
    "DRAIN_S_DEFAULT",
    "MATURITY_BLOCKS_DEFAULT",
    "WINDOW_DEFAULT",
    "WORKLOADS",
    "WORKLOAD_TRANSFER",
    "Bench",
    "BenchConfig",
    "BenchProgress",
    "BenchResult",
    "ProcessUse",
    "default_clients",
    "open_bench",
]


def client_main(spec: ClientSpec, shared: Shared) -> None:
    """A client process: the workload's client, signing (if it pre-signs), reporting ready,
    waiting for the start, sending, reporting done."""
    client: Sender | Reader
    if spec.workload == WORKLOAD_QUERY:
        client = Reader(spec, shared)
    elif spec.workload == WORKLOAD_RECEIVABLE:
        client = FlowSender(spec, shared)
    else:
        client = Sender(spec, shared)
    run_client(client, spec.index, shared.messages)


class Bench:
    """One run of a workload against the cluster in `home` (module docstring)."""

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
        config.check_accounts(accounts)
        self.home, self.config, self.accounts = home, config, accounts
        self._master = master
        self._on_progress = on_progress or (lambda _progress: None)
        self._tally = Tally()
        if config.workload == WORKLOAD_RECEIVABLE:
            self._tally.outboxes = {}
        self._context = multiprocessing.get_context("spawn")
        self._settled = 0  # admitted transactions seen in a block
        self._ready: dict[int, tuple[float, int]] = {}  # client: (signing seconds, pid)
        self._reports: dict[int, dict[str, Any]] = {}
        self._refused: Counter[str] = Counter()
        self._shared: Any = None
        self._processes: list[SpawnProcess] = []

    @property
    def reads(self) -> bool:
        return self.config.workload == WORKLOAD_QUERY

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
        config, context = self.config, self._context
        nodes = [node for node in self.home.nodes if running_pid(self.home, node) is not None]
        if not nodes:
            raise BenchError(f"no node of {self.home.root} is running (cluster up first)")
        follower = AsyncClient(nodes[0].api_url, timeout_s=REQUEST_TIMEOUT_S)
        try:
            status = await follower.status()
        except ClientError as error:
            raise BenchError(f"{nodes[0].name} does not answer: {error}") from None
        chain = ChainInfo.from_status(status)
        contract = {WORKLOAD_SMALLBANK: "smallbank", WORKLOAD_RECEIVABLE: "receivable"}
        needed = contract.get(config.workload)
        if needed is not None and needed not in chain.contract_versions:
            raise BenchError(
                f"the chain of {self.home.root} runs no {needed} contract (made by an older"
                " build?); make a new cluster: consortia cluster up --home NEW_DIR --accounts A"
            )
        if not self.reads:
            await self._check_mempools_empty(nodes)
        shared = Shared(
            sent=context.Array("q", config.clients, lock=False),
            admitted=context.Array("q", config.clients, lock=False),
            settled=context.Value("q", 0, lock=False),
            height=context.Value("q", int(status["height"]), lock=False),
            start_at=context.Value("d", 0.0, lock=False),
            start=context.Event(),
            stop=context.Event(),
            messages=context.Queue(),
            settlements=[
                context.Queue() if self._tally.outboxes is not None else None
                for _ in range(config.clients)
            ],
        )
        total = config.presigned()
        processes = [
            context.Process(
                target=client_main,
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
            for inbox in shared.settlements:
                if inbox is not None:  # what no client will read must not hold this process
                    inbox.cancel_join_thread()
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=5)

    def _spec(
        self,
        index: int,
        nodes: list[NodeEntry],
        chain: ChainInfo,
        status: dict[str, Any],
        total: int,
    ) -> ClientSpec:
        config = self.config
        share = total // config.clients + (1 if index < total % config.clients else 0)
        return ClientSpec(
            index=index,
            clients=config.clients,
            workload=config.workload,
            seed=config.seed,
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
            maturity_blocks=config.maturity_blocks,
            genesis_json=(self.home.root / layout.GENESIS_FILE).read_bytes(),
        )

    async def _drive(
        self,
        nodes: list[NodeEntry],
        follower: AsyncClient,
        shared: Shared,
        processes: list[SpawnProcess],
        total: int,
    ) -> BenchResult:
        self._shared, self._processes = shared, processes
        presign_s = await self._wait_ready()
        watched = [Watched(node.name, running_pid(self.home, node), node.api_url) for node in nodes]
        clients = [Watched(f"client {i}", self._ready[i][1]) for i in range(len(processes))]
        clients.append(Watched("bench", os.getpid()))  # this process: following, matching
        height_start = int((await follower.status())["height"])
        self._tally.height = height_start
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
            for entry, count in zip(watched, await round_timeouts(http, watched), strict=True):
                entry.timeouts_start = count
            for entry in (*watched, *clients):
                entry.begin()
            blocks = await self._measure(follower, (*watched, *clients), height_start)
            for entry, count in zip(watched, await round_timeouts(http, watched), strict=True):
                entry.timeouts_end = count
        config, tally, reports = self.config, self._tally, list(self._reports.values())
        failed = self._refused
        flows: Counter[str] = Counter()
        for report in reports:
            flows.update(report.get("flows", {}))
        result = BenchResult(
            workload=config.workload,
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
            latency_ms=percentiles(tally.latencies),
            send_lag_ms_max=round(max(float(report["lag_s"]) for report in reports) * 1000, 1),
            exhausted=any(report["exhausted"] for report in reports),
            request_errors=sorted({e for r in reports for e in r["errors"]})[:ERRORS_KEPT],
            blocks=blocks,
            height_start=height_start,
            height_end=tally.height,
            node_use=[entry.use(config.duration_s) for entry in watched],
            client_use=[entry.use(config.duration_s) for entry in clients],
            seed=config.seed,
            rejected=sum(tally.rejected.values()),
            rejected_by_code=dict(sorted(tally.rejected.items())),
            by_kind={kind: dict(counts) for kind, counts in sorted(tally.by_kind.items())},
            flows=dict(flows),
            timeline=per_second(tally.settled_at, tally.latencies, tally.window_start),
        )
        if self.reads:
            add_read_figures(result, reports)
        return result

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
                for tx_hash, sent_at, tx_kind in message[2]:
                    if tally.admitted(tx_hash, sent_at, tx_kind, index):
                        self._settled += 1
                self._refused.update(message[3])
            elif kind == "done":
                self._reports[index] = message[2]
            elif kind == "error":
                raise BenchError(f"client {index} failed:\n{message[2]}")
        shared.settled.value = self._settled
        shared.height.value = tally.height
        self._pass_on()

    def _pass_on(self) -> None:
        """Tell each client that waits for them what became of its transactions."""
        outboxes = self._tally.outboxes
        if not outboxes:
            return
        for client, settled in outboxes.items():
            if settled and client not in self._reports:  # a client that is done reads no more
                self._shared.settlements[client].put(settled)
        outboxes.clear()

    def _progress(self, phase: str, started: float) -> None:
        tally, shared = self._tally, self._shared
        committed = sum(shared.admitted[:]) if self.reads else tally.committed
        self._on_progress(
            BenchProgress(
                phase,
                time.monotonic() - started,
                self.config.duration_s,
                sum(shared.sent[:]),
                committed,
                sum(self._refused.values()),
                len(tally.pending),
                tally.height,
                sum(tally.rejected.values()),
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
        self, follower: AsyncClient, watched: Sequence[Watched], height_start: int
    ) -> int:
        """Start the clients, follow the chain through the window and the drain; the number
        of blocks committed during the window."""
        config, tally, shared = self.config, self._tally, self._shared
        start = time.monotonic() + 0.05
        tally.window_start, tally.window_end = start, start + config.duration_s
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
        """Read every new block's receipts from the followed node as soon as it has them: its
        block stream (`GET /v1/subscribe/blocks`) says when a block is committed, so nothing
        polls (polling every FOLLOW_PAUSE_S cost this process and node 0 a request each time,
        most of them answered "not yet"). A stream that ends or cannot be opened is opened
        again after FOLLOW_PAUSE_S, from the first height not yet read."""
        tally = self._tally
        while True:
            stream = follower.subscribe_blocks(tally.height + 1, retry=FOLLOW_RECONNECT)
            try:
                async for announced in stream:
                    while tally.height < int(announced["height"]):
                        self._note_block(await follower.block_receipts(tally.height + 1))
            except ClientError as error:
                if error.code not in ("not_found", "unreachable", "subscription_lost"):
                    raise
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(FOLLOW_PAUSE_S)

    def _note_block(self, block: dict[str, Any]) -> None:
        at = time.monotonic()
        tally = self._tally
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
