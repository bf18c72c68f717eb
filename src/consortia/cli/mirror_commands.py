"""`consortia mirror`: follow a node as a light client and write what it verified into
PostgreSQL (docs/mirror.md).

    mirror --home DIR --dsn DSN [--node I] [--api URL] [--metrics-port P] [--until H]
           [--batch-blocks N] [--log-every S] [--json-logs]

`--home` is a node's folder (its config.toml names the API, the genesis and the genesis
hash) or a consortium's folder (its genesis.json; `--node I` picks the validator to follow,
0 by default). `--api` follows another address with the same genesis. The DSN must not hold
a password (PGPASSWORD, a password file or a service file do; docs/mirror.md). Runs until
SIGTERM or SIGINT (status 0), or until `--until` is written. A node's answer that does not
verify stops it with status 1; a database or configuration problem with status 2; a block
its engine cannot run with status 3; each as one line `error: <code>: <message>`.

Must never print or log the DSN as given, nor a password.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from consortia.cli.node_commands import configure_logging
from consortia.cli.options import MetricsAddress, MetricsPort, NodeOrConsortiumHome, PgDsn
from consortia.cluster.home import ClusterHome, api_url
from consortia.identity import layout
from consortia.identity.config import load_node_config, resolve
from consortia.identity.genesis import load_genesis
from consortia.mirror.database import MirrorDatabase
from consortia.mirror.dsn import checked, describe
from consortia.mirror.errors import MirrorError
from consortia.mirror.follow import FollowSettings, Mirror
from consortia.mirror.metrics import MirrorMetrics
from consortia.mirror.source import NodeSource
from consortia.types.genesis import Genesis


def register(app: typer.Typer) -> None:
    app.command("mirror")(mirror_command)


def mirror_command(
    home: NodeOrConsortiumHome,
    dsn: PgDsn,
    node: Annotated[
        int | None, typer.Option("--node", help="In a consortium's folder: the validator.", min=0)
    ] = None,
    api: Annotated[
        str | None, typer.Option("--api", help="Follow this API instead of the config's.")
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_address: MetricsAddress = "127.0.0.1",
    until: Annotated[
        int | None, typer.Option("--until", help="Stop once this height is written.", min=0)
    ] = None,
    batch_blocks: Annotated[
        int, typer.Option("--batch-blocks", help="Most blocks a database transaction.", min=1)
    ] = 64,
    log_every: Annotated[
        float, typer.Option("--log-every", help="Seconds between progress lines.", min=0.1)
    ] = 10.0,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Mirror a node's verified blocks, transactions, receipts, events and state changes
    into PostgreSQL."""
    parameters = checked(dsn)
    genesis, url = _target(home, node, api)
    configure_logging(json_lines=json_logs)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    metrics = MirrorMetrics()
    server = None if metrics_port is None else metrics.serve(metrics_port, metrics_address)
    settings = FollowSettings(
        until_height=until, batch_blocks_max=batch_blocks, log_every_s=log_every
    )
    mirror = Mirror(
        genesis,
        NodeSource(url),
        lambda: MirrorDatabase.connect(dsn),
        metrics=metrics,
        settings=settings,
        stop=stop,
        database_name=describe(parameters),
    )
    try:
        mirror.run()
    except MirrorError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_status) from None
    finally:
        if server is not None:
            server.shutdown()


def _target(home: Path, node: int | None, api: str | None) -> tuple[Genesis, str]:
    """The genesis (checked against the config's hash) and the API to follow."""
    config_path = home / layout.CONFIG_FILE
    if config_path.exists():
        config = load_node_config(config_path)
        genesis, _ = load_genesis(
            resolve(config_path, config.chain.genesis), bytes.fromhex(config.chain.genesis_hash)
        )
        return genesis, api or api_url(config.network.api_listen)
    cluster = ClusterHome.open(home)
    entry = cluster.node(node or 0)
    genesis, _ = load_genesis(cluster.root / layout.GENESIS_FILE, None)
    return genesis, api or entry.api_url
