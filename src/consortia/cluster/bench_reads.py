"""The query workload's client: certified reads of GET /v1/accounts/{id}?proof=true, each
checked against the validators learnt from the genesis (`bench_workloads.read_one`),
measured where they are made.

Each client reads accounts chosen uniformly among the first A benchmark accounts
(`query_account`, from its seeded random source), to the nodes in turn:

* at a fixed rate R, read j of client c is due at start + j / (R / C); every SEND_INTERVAL_S
  the client starts the reads that came due, each as its own request, without waiting for
  earlier answers (open loop); a read's latency runs from its due time to its answer;
* at `max`, each client keeps READS_IN_FLIGHT reads waiting for an answer; a read's latency
  runs from its request to its answer.

A read is `answered` (a 200), or failed by the error's code. Reads still unanswered at the end
of the window are waited for (at most REQUEST_TIMEOUT_S) and counted. The client reports its
counts and every latency to the bench process when done.

This module must never print, sign or send a transaction.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from typing import Any, Final

from consortia.client import AsyncClient, ClientError, LightClient, VerificationError
from consortia.cluster.bench_client import (
    ERRORS_KEPT,
    SEND_INTERVAL_S,
    ClientSpec,
    Shared,
    load_client,
    wait_start,
)
from consortia.cluster.bench_workloads import client_rng, query_account, read_one

READS_IN_FLIGHT: Final = 32  # a client's reads waiting for an answer at once, at `max`
TICK_S: Final = 0.002


class Reader:
    """A client of the query workload (module docstring)."""

    def __init__(self, spec: ClientSpec, shared: Shared) -> None:
        self.spec, self.shared = spec, shared
        self.rng = client_rng(spec.seed, spec.index)
        self.sent = 0
        self.in_flight = 0
        self.answered = 0
        self.answered_in_window = 0
        self.failed: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.lag_s = 0.0
        self.node = spec.index
        self.end = math.inf

    async def main(self) -> None:
        spec, shared = self.spec, self.shared
        clients = [load_client(url) for url in spec.urls]
        light = LightClient.from_genesis_json(spec.genesis_json)
        for client in clients:
            client.light = light  # one set of proven validator sets for all
        try:
            shared.messages.put(("ready", spec.index, 0.0, os.getpid()))
            if not await wait_start(shared):
                return
            await self.read_all(clients)
        finally:
            for client in clients:
                await client.close()
        shared.messages.put(("done", spec.index, self.report()))

    async def read_all(self, clients: list[AsyncClient]) -> None:
        rate = self.spec.rate_per_s
        tasks: set[asyncio.Task[None]] = set()
        start = float(self.shared.start_at.value)
        self.end = start + self.spec.duration_s
        while time.monotonic() < start:
            await asyncio.sleep(0.001)
        while not self.shared.stop.is_set():
            now = time.monotonic()
            if rate is None:
                if now >= self.end:
                    break
                while self.in_flight < READS_IN_FLIGHT:
                    self._launch(clients, tasks, None)
            else:
                due = math.ceil((min(now, self.end) - start) * rate)
                if self.sent < due:
                    self.lag_s = max(self.lag_s, now - (start + self.sent / rate))
                while self.sent < due:
                    self._launch(clients, tasks, start + self.sent / rate)
                if now >= self.end:
                    break
            await asyncio.sleep(TICK_S if rate is None else SEND_INTERVAL_S)
            self.shared.sent[self.spec.index] = self.sent
        if tasks:
            await asyncio.gather(*tasks)
        self.shared.sent[self.spec.index] = self.sent

    def _launch(
        self, clients: list[AsyncClient], tasks: set[asyncio.Task[None]], due: float | None
    ) -> None:
        client = clients[self.node % len(clients)]
        self.node += 1
        self.sent += 1
        self.in_flight += 1
        account = query_account(self.rng, self.spec.account_count)
        task = asyncio.get_running_loop().create_task(self._read(client, account, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _read(self, client: AsyncClient, account: str, due: float | None) -> None:
        began = time.monotonic() if due is None else due
        try:
            await read_one(client, account)
        except (ClientError, VerificationError) as error:
            self.failed[error.code] += 1
            text = f"{error.code}: {error.message}"[:200]
            if text not in self.errors and len(self.errors) < ERRORS_KEPT:
                self.errors.append(text)
            return
        finally:
            self.in_flight -= 1
        at = time.monotonic()
        self.answered += 1
        self.answered_in_window += at <= self.end
        self.latencies.append(at - began)
        self.shared.admitted[self.spec.index] = self.answered

    def report(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "answered_in_window": self.answered_in_window,
            "failed": dict(self.failed),
            "latencies": self.latencies,
            "lag_s": self.lag_s,
            "errors": self.errors,
            "retried": 0,
            "exhausted": False,
        }
