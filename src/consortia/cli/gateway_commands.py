"""`consortia gateway`: serve datasets from PostgreSQL to the members granted them on chain
(docs/datashare.md).

    gateway --home DIR --dsn DSN --dataset ID [--dataset ID ...] --queries FILE
            --account NAME [--keys FILE] [--node I] [--api URL] [--host H] [--port P]
            [--passphrase-file F] [--freshness-s S] [--json-logs]

`--home` is a consortium's folder (its genesis starts the light client, its node I is asked)
holding the gateway account's key (`--account`, a `datashare` gateway of the datasets), opened
with `--passphrase-file`, CONSORTIA_PASSPHRASE or DIR/.demo-passphrase: never a command-line
value. `--queries` maps each dataset to its SQL (gateway/database.py). Encryption keys (the
consumers' and the escrow key) are read from the chain with certified reads, or, with
`--keys`, from a public file (gateway/keys.py). The DSN must not hold a password (PGPASSFILE, a
password file, a service file or PGPASSWORD do).

Runs until SIGTERM or SIGINT. A configuration problem is one line `error: <code>: <message>`
and status 2. Must never print or log the DSN as given, a password, a passphrase, a key, a
row or a query parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from consortia.cli.mirror_commands import _target
from consortia.cli.node_commands import configure_logging
from consortia.client import Client, LightClient, Signer
from consortia.cluster.accounts import account_key
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.crypto import suite as get_suite
from consortia.gateway.chain import CertifiedChain
from consortia.gateway.database import Database, load_queries
from consortia.gateway.keys import ChainKeys, KeyDirectory, KeysFile
from consortia.gateway.protocol import ReplayWindow
from consortia.gateway.service import Gateway, create_app
from consortia.identity.keystore import load_key
from consortia.mirror.dsn import checked, describe
from consortia.types.datashare_request import FRESHNESS_MS


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway_command)


def gateway_command(
    home: Annotated[Path, typer.Option("--home", help="The consortium's folder.")],
    dsn: Annotated[
        str,
        typer.Option(
            "--dsn", help="The owner's database, without a password (PGPASSFILE, service=)."
        ),
    ],
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="Serve this dataset (repeatable).")
    ],
    queries: Annotated[
        Path, typer.Option("--queries", help="JSON file: each dataset's SQL and parameters.")
    ],
    account: Annotated[
        str, typer.Option("--account", help="The gateway's account (its key in --home).")
    ],
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="JSON file of encryption public keys and escrow (default: the chain's).",
        ),
    ] = None,
    node: Annotated[int | None, typer.Option("--node", help="Ask node I.", min=0)] = None,
    api: Annotated[str | None, typer.Option("--api", help="A node's API URL.")] = None,
    host: Annotated[str, typer.Option("--host", help="Listen on this address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Listen on this port.", min=1)] = 8800,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="File holding the account key's passphrase (default: $CONSORTIA_PASSPHRASE,"
            " then DIR/.demo-passphrase).",
            show_default=False,
        ),
    ] = None,
    freshness_s: Annotated[
        int,
        typer.Option(
            "--freshness-s",
            help="Requests' clock tolerance (at most the chain's, which log_access applies).",
            min=1,
            max=FRESHNESS_MS // 1000,
        ),
    ] = FRESHNESS_MS // 1000,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Serve datasets to granted members: certified grant checks, accesses logged on chain,
    answers sealed to the consumer."""
    database = describe(checked(dsn))
    genesis, url = _target(home, node, api)
    suite = get_suite(genesis.suite)
    served = list(dict.fromkeys(dataset))
    dataset_queries = load_queries(queries, served)
    cluster = ClusterHome.open(home)
    account_id, key_path = account_key(cluster.root, account)
    private_key = load_key(
        key_path, demo_passphrase(cluster, passphrase_file), purpose="account"
    ).private_key
    configure_logging(json_lines=json_logs)
    client = Client(url, light=LightClient(genesis), timeout_s=30.0)
    signer = Signer(account_id, private_key, client.chain())
    del private_key
    chain = CertifiedChain(client, signer)
    key_directory: KeyDirectory = (
        ChainKeys(chain, suite) if keys is None else KeysFile.load(keys, suite)
    )
    gateway = Gateway(
        genesis.suite,
        chain,
        key_directory,
        Database(dsn),
        dataset_queries,
        window=ReplayWindow(freshness_ms=freshness_s * 1000),
    )
    gateway.log.info(
        "gateway started",
        account=account_id,
        datasets=served,
        database=database,
        listen=f"{host}:{port}",
    )
    try:
        uvicorn.run(
            create_app(gateway),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    finally:
        client.close()
