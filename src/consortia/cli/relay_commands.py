"""`consortia relay`: put a business database's outbox intents on chain exactly once and
record their outcomes there (docs/outbox.md).

    relay --dsn DSN --home DIR [--account ID ...] [--node I] [--passphrase-file F]
          [--metrics-port P] [--until-idle] [--batch N] [--expiry-blocks N] [--json-logs]

`--home` is a consortium's folder (`consortia cluster up`, `consortia init`): its nodes are
the ones the relay talks to (`--node I` pins one; otherwise it moves to the next when one
stops answering), and its account keys are the ones it signs with, opened with the
passphrase of `--passphrase-file`, CONSORTIA_PASSPHRASE or DIR/.demo-passphrase (never a
command-line value). `--account` (repeatable) limits the relay to those signing accounts,
whose keys are opened at start; without it, every account's intents are relayed and keys are
opened as intents need them (an intent for an account without a key here fails `no_key`).
The DSN must not hold a password (PGPASSWORD, a password file or a service file do).

Runs until SIGTERM or SIGINT (status 0; the pass under way finishes first), or with
`--until-idle` until nothing is pending or waiting for the chain. A configuration or
database problem at start is one line `error: <code>: <message>` and status 2.

Must never print or log the DSN as given, a password, a passphrase or a key.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consortia.cli.node_commands import configure_logging
from consortia.cli.options import MetricsAddress, MetricsPort
from consortia.client import ChainInfo, Client, ClientError, LightClient, Signer
from consortia.client.outbox import (
    ChainChecks,
    OutboxStore,
    Relay,
    RelayCounters,
    RelaySettings,
)
from consortia.cluster.accounts import account_key, open_signer
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.errors import AccountKeyNotFoundError, NodeRefusalError
from consortia.identity import layout
from consortia.identity.genesis import load_genesis
from consortia.identity.keystore import UnlockedKey, load_key
from consortia.mirror.dsn import checked, describe
from consortia.types.genesis import genesis_hash


def register(app: typer.Typer) -> None:
    app.command("relay")(relay_command)


class _RelayCollector(Collector):
    """The relay's counters, read at scrape time."""

    def __init__(self, counters: RelayCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        waiting = GaugeMetricFamily(
            "consortia_relay_intents", "intents waiting, by state", labels=["state"]
        )
        for state in ("pending", "signed"):
            waiting.add_metric([state], c.waiting.get(state, 0))
        yield waiting
        for name, value, text in (
            ("signed", c.signed, "transactions signed by this process"),
            ("submitted", c.submitted, "signed transactions sent (again) by this process"),
            ("committed", c.committed, "intents recorded committed by this process"),
            ("failed", c.failed, "intents recorded failed by this process"),
            ("resigned", c.resigned, "intents signed again (their transaction never executed)"),
            ("node_retries", c.node_retries, "passes retried: the node unavailable"),
            ("database_retries", c.database_retries, "passes retried: the database lost"),
            (
                "verification_failures",
                c.verification_failures,
                "node answers refused: a check against the validators failed",
            ),
            ("unproven", c.unproven, "lookups that proved nothing (absence_unproven)"),
        ):
            counter = CounterMetricFamily(f"consortia_relay_{name}", text)
            counter.add_metric([], value)
            yield counter


def relay_command(
    dsn: Annotated[
        str,
        typer.Option(
            "--dsn",
            help="The business database's DSN without a password (PGPASSWORD, PGPASSFILE,"
            " service=).",
        ),
    ],
    home: Annotated[Path, typer.Option("--home", help="The consortium's folder.")],
    account: Annotated[
        list[str] | None,
        typer.Option("--account", help="Relay only this signing account (repeatable)."),
    ] = None,
    node: Annotated[
        int | None, typer.Option("--node", help="Talk to node I only (default: any).", min=0)
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="File holding the keys' passphrase (default: $CONSORTIA_PASSPHRASE, then"
            " DIR/.demo-passphrase).",
            show_default=False,
        ),
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_address: MetricsAddress = "127.0.0.1",
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once nothing waits.")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", help="Most intents signed or sent a pass.", min=1, max=2000)
    ] = 256,
    expiry_blocks: Annotated[
        int,
        typer.Option(
            "--expiry-blocks", help="Blocks a signed transaction stays valid.", min=2, max=100_000
        ),
    ] = 1000,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Sign and submit the outbox's intents, wait for their commits, record the outcomes."""
    database = describe(checked(dsn))
    cluster = ClusterHome.open(home)
    # What the relay believes of the chain is checked against the validators named by the
    # consortium's own genesis, never against what a node says (docs/outbox.md).
    genesis, _ = load_genesis(cluster.root / layout.GENESIS_FILE, None)
    checks = ChainChecks(LightClient(genesis), genesis.mempool.transaction_bytes_max)
    passphrase = demo_passphrase(cluster, passphrase_file)
    urls = [entry.api_url for entry in cluster.select(node)]
    configure_logging(json_lines=json_logs)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    # With --account: each key opened now (a missing key or a wrong passphrase stops the
    # relay before it starts), kept as the Signer's key material only.
    opened: dict[str, UnlockedKey] = {}
    for name in dict.fromkeys(account or []):
        account_id, path = account_key(cluster.root, name)
        opened[account_id] = load_key(path, passphrase, purpose="account")
    accounts = list(opened) if account else None

    def chain_of(client: Client) -> ChainInfo:
        """The chain to sign for: its id, suite and genesis hash from the genesis file (a
        node cannot make the relay sign for another chain), the contract versions from the
        node (a wrong one fails in its block, with a proven receipt)."""
        versions = client.chain().contract_versions
        return ChainInfo(genesis.chain_id, genesis.suite, genesis_hash(genesis), versions)

    def signer_for(account_id: str, client: Client) -> Signer | None:
        if account_id in opened:
            return Signer(account_id, opened[account_id].private_key, chain_of(client))
        if accounts is not None:
            return None
        try:
            return open_signer(cluster.root, account_id, chain_of(client), passphrase)
        except AccountKeyNotFoundError:
            return None

    relay = Relay(
        lambda: OutboxStore.connect(dsn),
        urls,
        signer_for,
        checks=checks,
        accounts=accounts,
        settings=RelaySettings(batch_max=batch, expiry_blocks=expiry_blocks, until_idle=until_idle),
        stop=stop,
    )
    relay.log.info("relay configured", database=database, nodes=len(urls))
    server = None
    if metrics_port is not None:
        registry = CollectorRegistry()
        registry.register(_RelayCollector(relay.counters))
        server, _thread = start_http_server(metrics_port, addr=metrics_address, registry=registry)
    try:
        relay.run()
    except ClientError as error:
        raise NodeRefusalError(error.code, error.message) from None
    finally:
        if server is not None:
            server.shutdown()
