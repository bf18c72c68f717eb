"""The mirror's Prometheus metrics, in a registry of its own, served (optionally) on
`--metrics-port` at `/metrics`.

| metric | type | meaning |
|---|---|---|
| `consortia_mirror_height` | gauge | the height committed to the database |
| `consortia_mirror_node_height` | gauge | the followed node's height, as it last said |
| `consortia_mirror_behind_blocks` | gauge | node height minus mirrored height (0 when caught up) |
| `consortia_mirror_pending_blocks` | gauge | blocks executed and waiting for a certificate |
| `consortia_mirror_blocks_total` | counter | blocks written by this process |
| `consortia_mirror_transactions_total` | counter | transactions written by this process |
| `consortia_mirror_node_retries_total` | counter | node requests retried (unreachable, 5xx) |
| `consortia_mirror_database_retries_total` | counter | batches retried after a lost connection |
| `consortia_mirror_write_seconds` | histogram | one batch's database transaction |

Owns the names; never blocks the follower (prometheus_client serves from its own thread).
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MirrorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.height = Gauge(
            "consortia_mirror_height", "height committed to the database", registry=r
        )
        self.node_height = Gauge(
            "consortia_mirror_node_height", "the followed node's height", registry=r
        )
        self.behind = Gauge(
            "consortia_mirror_behind_blocks", "node height minus mirrored height", registry=r
        )
        self.pending = Gauge(
            "consortia_mirror_pending_blocks", "blocks waiting for a certificate", registry=r
        )
        self.blocks = Counter("consortia_mirror_blocks", "blocks written", registry=r)
        self.transactions = Counter(
            "consortia_mirror_transactions", "transactions written", registry=r
        )
        self.node_retries = Counter(
            "consortia_mirror_node_retries", "node requests retried", registry=r
        )
        self.database_retries = Counter(
            "consortia_mirror_database_retries", "batches retried", registry=r
        )
        self.write_seconds = Histogram(
            "consortia_mirror_write_seconds",
            "one batch's database transaction",
            buckets=WRITE_BUCKETS,
            registry=r,
        )

    def observe(self, mirrored: int, node: int, pending: int) -> None:
        self.height.set(mirrored)
        self.node_height.set(node)
        self.behind.set(max(0, node - mirrored))
        self.pending.set(pending)

    def serve(self, port: int, address: str = "127.0.0.1") -> WSGIServer:
        """Serve `/metrics` on `address:port` from a daemon thread; the server (`shutdown`)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
