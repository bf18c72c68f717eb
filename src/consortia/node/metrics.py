"""The node's Prometheus metrics, collected when /metrics is read.

Owns the metric names and their help texts. Reads the node's counters at scrape time (no
background thread, no state of its own) and never changes anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from consortia.node.driver import Driver
from consortia.node.service import NodeService


class _NodeCollector(Collector):
    def __init__(self, service: NodeService, driver: Driver, transport: Any) -> None:
        self._service = service
        self._driver = driver
        self._transport = transport

    def collect(self) -> Iterator[Any]:
        driver = self._driver
        replica = driver.replica
        yield GaugeMetricFamily(
            "consortia_committed_height",
            "The height of the last committed block",
            driver.chain.height,
        )
        yield GaugeMetricFamily("consortia_epoch", "The replica's epoch", replica.epoch)
        yield GaugeMetricFamily("consortia_round", "The replica's round", replica.round)
        yield CounterMetricFamily(
            "consortia_transactions_committed",
            "Transactions in blocks this node committed (receipts, failed ones included)",
            driver.counters.transactions_committed,
        )
        yield GaugeMetricFamily(
            "consortia_mempool_transactions", "Transactions waiting", len(driver.mempool)
        )
        yield GaugeMetricFamily(
            "consortia_mempool_bytes", "Bytes of transactions waiting", driver.mempool.size_bytes
        )
        yield GaugeMetricFamily(
            "consortia_peers_connected", "Peers with a live link", len(self._transport.connected())
        )
        drops = CounterMetricFamily(
            "consortia_consensus_dropped",
            "Messages the replica dropped, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(replica.counters.dropped.items()):
            drops.add_metric([reason], count)
        yield drops
        refused = CounterMetricFamily(
            "consortia_safety_refused",
            "Signatures the safety rules refused, by rule",
            labels=["rule"],
        )
        for rule, count in sorted(replica.counters.refused.items()):
            refused.add_metric([rule], count)
        yield refused
        persists = driver.counters.persists
        yield CounterMetricFamily(
            "consortia_persist_count", "Safety-state writes made durable", persists
        )
        yield GaugeMetricFamily(
            "consortia_persist_ms_mean",
            "Mean time to make the safety state durable (ms)",
            driver.counters.persist_ms_total / persists if persists else 0.0,
        )
        yield CounterMetricFamily(
            "consortia_frames_refused",
            "Frames from peers that did not decode",
            driver.counters.frames_refused,
        )
        yield CounterMetricFamily(
            "consortia_round_timeouts",
            "Round timers that fired on this node",
            driver.counters.timeouts,
        )
        yield CounterMetricFamily(
            "consortia_idle_pauses",
            "Empty payloads this node held back as leader while the network was idle",
            driver.counters.idle_pauses,
        )
        yield from _certificate_metrics(driver)
        yield from _vouching_metrics(driver)
        yield from _journal_metrics(self._service)
        yield from _transport_metrics(self._transport)


def _journal_metrics(service: NodeService) -> Iterator[Any]:
    """The transaction journal's durable writes (node/journal.py), when the node keeps one."""
    if service.journal is None:
        return
    counters = service.journal.counters
    yield CounterMetricFamily(
        "consortia_journal_writes",
        "Durable appends to the transaction journal (one fdatasync each)",
        counters.writes,
    )
    yield CounterMetricFamily(
        "consortia_journal_transactions",
        "Client transactions written to the journal before they were answered pending",
        counters.transactions,
    )
    yield CounterMetricFamily(
        "consortia_journal_rewrites",
        "Times the journal was rewritten with what the mempool holds",
        counters.rewrites,
    )


def _vouching_metrics(driver: Driver) -> Iterator[Any]:
    """Signatures of passed-on transactions checked here or vouched for (node/vouching.py)."""
    counters = driver.vouching.counters
    yield CounterMetricFamily(
        "consortia_passed_on_checked",
        "Passed-on transactions whose signatures this node checked itself",
        counters.checked_here,
    )
    yield CounterMetricFamily(
        "consortia_passed_on_vouched",
        "Passed-on transactions admitted on the vouching of validators past the faulty power",
        counters.admitted_checked,
    )
    yield CounterMetricFamily(
        "consortia_vouching_acks_sent", "Batches this node checked and acked", counters.acks_sent
    )
    yield CounterMetricFamily(
        "consortia_vouching_waits_expired",
        "Held batches checked here because their checkers' acks did not come in time",
        counters.waits_expired,
    )


def _certificate_metrics(driver: Driver) -> Iterator[Any]:
    """Execution certificates formed, the highest certified height, and votes dropped."""
    counters = driver.certifier.attestations.counters
    yield CounterMetricFamily(
        "consortia_execution_certificates",
        "Execution certificates this node formed (a quorum signed a block's execution header)",
        counters.certificates,
    )
    yield GaugeMetricFamily(
        "consortia_certified_height",
        "The highest height this node formed an execution certificate for",
        counters.certified_height,
    )
    dropped = CounterMetricFamily(
        "consortia_execution_votes_dropped",
        "Execution votes dropped, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(counters.dropped.items()):
        dropped.add_metric([reason], count)
    yield dropped


def _transport_metrics(transport: Any) -> Iterator[Any]:
    """The transport's refused handshakes, dropped frames and closed links, by reason."""
    counters = transport.counters
    for name, help_text, by_reason in (
        ("consortia_peer_refusals", "Peer connections refused at the handshake", "refusals"),
        ("consortia_peer_drops", "Frames to peers dropped", "drops"),
        ("consortia_peer_closes", "Peer links closed", "closes"),
    ):
        family = CounterMetricFamily(name, f"{help_text}, by reason", labels=["reason"])
        for reason, count in sorted(getattr(counters, by_reason).items()):
            family.add_metric([str(reason)], count)
        yield family


def node_registry(service: NodeService, driver: Driver, transport: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_NodeCollector(service, driver, transport))
    return registry
