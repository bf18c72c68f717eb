"""What a live view of a local cluster shows, gathered from the nodes' own APIs: each node's
process, height, round, peers and mempool, the committed throughput, and a receivable's
parts.

`Monitor.sample()` asks every node for `/v1/status` and `/metrics` (transactions committed)
and keeps a short history, from which it derives transactions and blocks per second over the
last RATE_WINDOW_S seconds. It reads only; it must never submit anything or signal a process.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from consortia.cluster.home import ClusterHome, NodeEntry
from consortia.cluster.processes import running_pid

RATE_WINDOW_S: Final = 10.0
REQUEST_TIMEOUT_S: Final = 2.0
COMMITTED_METRIC: Final = "consortia_transactions_committed"


@dataclass(frozen=True, slots=True)
class NodeView:
    node: NodeEntry
    pid: int | None
    height: int | None = None
    round: int | None = None
    peers: int | None = None
    mempool: int | None = None
    transactions: int | None = None  # committed so far, from /metrics

    @property
    def serving(self) -> bool:
        return self.height is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    nodes: tuple[NodeView, ...]
    transactions_per_s: float
    blocks_per_s: float

    @property
    def height(self) -> int:
        return max((view.height or 0 for view in self.nodes), default=0)


@dataclass
class Monitor:
    home: ClusterHome
    _client: httpx.AsyncClient = field(init=False)
    # (time, highest height, transactions committed by the highest node)
    _history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=256))

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S)

    async def close(self) -> None:
        await self._client.aclose()

    async def sample(self) -> Snapshot:
        views = await asyncio.gather(*(self._view(node) for node in self.home.nodes))
        now = time.monotonic()
        serving = [view for view in views if view.serving]
        if serving:
            top = max(serving, key=lambda view: view.height or 0)
            self._history.append((now, top.height or 0, top.transactions or 0))
        while self._history and now - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        transactions_per_s, blocks_per_s = self._rates()
        return Snapshot(now, tuple(views), transactions_per_s, blocks_per_s)

    def _rates(self) -> tuple[float, float]:
        if len(self._history) < 2:
            return 0.0, 0.0
        (start, height0, count0), (end, height1, count1) = self._history[0], self._history[-1]
        elapsed = end - start
        if elapsed <= 0:
            return 0.0, 0.0
        return max(0, count1 - count0) / elapsed, max(0, height1 - height0) / elapsed

    async def _view(self, node: NodeEntry) -> NodeView:
        pid = running_pid(self.home, node)
        if pid is None:
            return NodeView(node, None)
        try:
            status = (await self._client.get(f"{node.api_url}/v1/status")).json()
            metrics = (await self._client.get(f"{node.api_url}/metrics")).text
        except (httpx.HTTPError, ValueError):
            return NodeView(node, pid)
        return NodeView(
            node,
            pid,
            height=int(status.get("height", 0)),
            round=int(status.get("round", 0)),
            peers=len(status.get("peers", [])),
            mempool=int(status.get("mempool", {}).get("transactions", 0)),
            transactions=committed_transactions(metrics),
        )

    async def state(self, node: NodeEntry, contract: str, key: str) -> Any:
        """A contract's state value at `key` on `node` (None when absent or unreachable)."""
        url = f"{node.api_url}/v1/state/{quote(contract)}/{quote(key, safe='/')}"
        try:
            response = await self._client.get(url)
            return response.json().get("value") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def committed_transactions(metrics_text: str) -> int | None:
    """The transactions-committed counter in a node's Prometheus text."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == COMMITTED_METRIC:
            for sample in family.samples:
                if sample.name.endswith("_total") or sample.name == COMMITTED_METRIC:
                    return int(sample.value)
    return None
