"""What `consortia bench` reports and how it measures the processes: the result of a run
(`BenchResult`, `ProcessUse`), the readings of /proc (CPU seconds, resident memory), a node's
round timeouts from its /metrics, and latency percentiles.

Each node's CPU (percent of one core, over the measurement window) and memory come from
/proc/PID/stat and /proc/PID/status of the pids in the cluster's pid files (the client
processes' too), its round timeouts from its /metrics.

This module only measures and holds results; it must never print, start a process or send a
transaction.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

TIMEOUTS_METRIC: Final = "consortia_round_timeouts_total"
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
    """One run's figures. Transactions: submitted = committed + failed + lost; `rejected`
    (by code) are committed transactions whose receipt failed a business rule (insufficient
    funds in SmallBank, say), counted in `committed` too. `by_kind` counts committed and
    rejected transactions by what they do (a SmallBank transaction type, a receivable step).
    The query workload sends no transaction: its figures are in `reads`."""

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
    seed: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)  # receivable: started, completed, ...
    reads: dict[str, Any] = field(default_factory=dict)  # query: sent, answered, per_s, ...
    # Second by second from the window's start, to the last commit: `per_second`.
    timeline: list[dict[str, float | int]] = field(default_factory=list)

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


def per_second(
    settled_at: Sequence[float], latencies: Sequence[float], start: float
) -> list[dict[str, float | int]]:
    """The committed transactions of each second from `start` (seconds of the monotonic clock)
    to the last of them, with the p50 and p99 of their latencies in milliseconds (0 for a
    second with none): whether a run held its pace or stalled. `settled_at[i]` is when the
    transaction of `latencies[i]` was seen committed; any before `start` count in second 0."""
    assert len(settled_at) == len(latencies)
    if not settled_at:
        return []
    buckets: list[list[float]] = [[] for _ in range(int(max(settled_at) - start) + 1)]
    for at, latency in zip(settled_at, latencies, strict=True):
        buckets[max(0, int(at - start))].append(latency)
    timeline: list[dict[str, float | int]] = []
    for second, bucket in enumerate(buckets):
        figures = percentiles(bucket)
        timeline.append(
            {
                "second": second,
                "committed": len(bucket),
                "p50_ms": figures["p50"],
                "p99_ms": figures["p99"],
            }
        )
    return timeline


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, max and mean of `values` (seconds), in milliseconds."""
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


def add_read_figures(result: BenchResult, reports: Sequence[dict[str, Any]]) -> None:
    """Put the query workload's counts and latencies, from its clients' reports, in
    `result.reads` and `result.latency_ms` (it sent no transaction)."""
    failed: Counter[str] = Counter()
    latencies: list[float] = []
    for report in reports:
        failed.update(report["failed"])
        latencies.extend(report["latencies"])
    in_window = sum(int(report["answered_in_window"]) for report in reports)
    result.reads = {
        "sent": result.submitted,
        "answered": sum(int(report["answered"]) for report in reports),
        "failed": sum(failed.values()),
        "failed_by_code": dict(sorted(failed.items())),
        "answered_in_window": in_window,
        "per_s": round(in_window / result.duration_s, 1),
    }
    result.submitted = 0
    result.latency_ms = percentiles(latencies)


# ---------------------------------------------------------------- /proc readings


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
class Watched:
    """A process watched over the measurement window: a node, a client, the bench itself."""

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


async def round_timeouts(http: httpx.AsyncClient, watched: Sequence[Watched]) -> list[int | None]:
    """Each watched node's count of round timers fired, from its /metrics."""

    async def read(entry: Watched) -> int | None:
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


@dataclass
class Tally:
    """What the bench process has matched: admitted transactions and the blocks they came in."""

    window_start: float = 0.0
    window_end: float = math.inf
    pending: dict[str, tuple[float, str, int]] = field(default_factory=dict)  # admitted: hash ->
    # (sent at, kind, client)
    early: dict[str, tuple[float, bool, str]] = field(default_factory=dict)  # seen first
    committed: int = 0
    committed_in_window: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    settled_at: list[float] = field(default_factory=list)  # when each of `latencies` was seen
    height: int = 0
    outboxes: dict[int, list[tuple[str, bool]]] | None = None  # settlements to pass on

    def admitted(self, tx_hash: str, sent_at: float, kind: str, client: int) -> bool:
        """Note an admitted transaction; True when it had already been seen in a block."""
        seen = self.early.pop(tx_hash, None)
        if seen is None:
            self.pending[tx_hash] = (sent_at, kind, client)
            return False
        self._settle(tx_hash, (sent_at, kind, client), *seen)
        return True

    def seen(self, tx_hash: str, at: float, ok: bool, code: str) -> bool:
        """Note a transaction in a block; True when it was one of ours."""
        sent = self.pending.pop(tx_hash, None)
        if sent is None:
            self.early[tx_hash] = (at, ok, code)
            return False
        self._settle(tx_hash, sent, at, ok, code)
        return True

    def _settle(
        self, tx_hash: str, sent: tuple[float, str, int], at: float, ok: bool, code: str
    ) -> None:
        sent_at, kind, client = sent
        self.committed += 1
        self.latencies.append(at - sent_at)
        self.settled_at.append(at)
        if at <= self.window_end:
            self.committed_in_window += 1
        counts = self.by_kind.setdefault(kind, Counter())
        counts["committed"] += 1
        if not ok:
            self.rejected[code] += 1
            counts["rejected"] += 1
        if self.outboxes is not None:
            self.outboxes.setdefault(client, []).append((tx_hash, ok))
