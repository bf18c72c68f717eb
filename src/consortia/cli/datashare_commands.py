"""`consortia datashare`: a consumer's fetch from a data gateway, and the supervisor's audit
of every grant and access (docs/datashare.md).

    datashare fetch --home DIR --from NAME --gateway URL --dataset ID --grant N
                    [--param KEY=VALUE ... | --params-file FILE|-] [--node I] [--json]
                    [--passphrase-file F]
    datashare audit --home DIR [--node I] [--json]

`fetch` signs the request with the account's signing key, opens the sealed answer with the
account's current encryption key (the key file `consortia record key` made, of the version
the chain holds, read with a certified read) and checks the access record on chain through
the light client; it prints the rows (JSON lines, or one JSON document with `--json`). A
refusal is one line `error: <code>: <message>` (the gateway's or the node's code) and status
2. Query parameters that others on the machine must not see (the process list shows a
command line) come from `--params-file`: a JSON object of text and integers, in a file or on
standard input. `audit` lists every
grant and every access record, each proven under a certified state root (no account needed).

Must never print, log or send a private key or a passphrase. The rows are printed because
fetching them is the point: they go to this process's standard output only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from consortia.cli.json_input import read_json_input
from consortia.cli.output import out
from consortia.cli.record_commands import _private_key
from consortia.cli.tx_commands import (
    FromOption,
    HomeOption,
    JsonOption,
    NodeOption,
    PassphraseFileOption,
    ask,
    node_client,
)
from consortia.client import Client, ClientError, LightClient, VerificationError
from consortia.cluster.accounts import account_key, parse_arguments
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.errors import InvalidArgumentError, NodeRefusalError
from consortia.execution.contracts import identity_state
from consortia.gateway import audit
from consortia.gateway.consumer import DataConsumer
from consortia.identity import layout
from consortia.identity.keystore import load_key

PARAMS_FILE_BYTES_MAX: Final = 16 * 1024  # the gateway takes requests of at most 16 KiB

datashare_app = typer.Typer(
    help="Fetch shared data from a gateway; audit grants and accesses.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(datashare_app, name="datashare")
    datashare_app.command("fetch")(fetch_command)
    datashare_app.command("audit")(audit_command)


def _verified_client(cluster: ClusterHome, node: int | None) -> Client:
    client = node_client(cluster, node)
    client.light = LightClient.from_genesis_json((cluster.root / layout.GENESIS_FILE).read_bytes())
    return client


def fetch_command(
    home: HomeOption,
    sender: FromOption,
    gateway: Annotated[str, typer.Option("--gateway", help="The gateway's URL.")],
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset's id.")],
    grant: Annotated[int, typer.Option("--grant", help="The grant's number.", min=0)],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A query parameter KEY=VALUE; repeatable.")
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params-file",
            help="The query parameters as a JSON object, from a file or - (standard input),"
            " kept off the command line.",
        ),
    ] = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Fetch a dataset under a grant: the rows, opened here, and the access record checked."""
    if param and params_file is not None:
        raise InvalidArgumentError("give --param or --params-file, not both")
    params = _parameters(param or []) if params_file is None else parameters_file(params_file)
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    account, key_path = account_key(cluster.root, sender)
    with _verified_client(cluster, node) as client:
        chain = ask(client.chain)
        record = ask(
            lambda: client.state(
                identity_state.CONTRACT, identity_state.encryption_key_key(account), verify=True
            )
        )
        found = identity_state.versioned_key(record if isinstance(record, dict) else None, None)
        if found is None:
            raise InvalidArgumentError(
                f"{account} has no encryption key on chain (consortia record key registers one)"
            )
        encryption_key = _private_key(cluster.root, sender, account, found[0], passphrase)
        signing_key = load_key(key_path, passphrase, purpose="account").private_key
        with DataConsumer(
            gateway, account, signing_key, chain, encryption_key, node=client
        ) as consumer:
            try:
                fetched = consumer.fetch(dataset, grant, params)
            except ClientError as error:  # the gateway's code, or the node's, shown first
                raise NodeRefusalError(error.code, error.message) from None
            except VerificationError as error:
                raise NodeRefusalError("verification_failed", str(error)) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "access": fetched.access,
                    "height": fetched.height,
                    "tx_hash": fetched.tx_hash,
                    "query_digest": fetched.query_digest,
                    "answer_digest": fetched.answer_digest,
                    "rows": fetched.rows,
                }
            )
        )
        return
    for row in fetched.rows:
        typer.echo(json.dumps(row))
    out.print(
        f"{len(fetched.rows)} rows; access {fetched.access} logged at height {fetched.height}"
        f" (transaction {fetched.tx_hash}, proven)"
    )


def audit_command(home: HomeOption, node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Every grant and access record, each proven under a certified state root."""
    cluster = ClusterHome.open(home)
    with _verified_client(cluster, node) as client:
        grants = _all(client, audit.grants)
        accesses = _all(client, audit.accesses)
    if as_json:
        typer.echo(json.dumps({"grants": grants, "accesses": accesses}))
        return
    for grant in grants:
        consent = "n/a"
        if grant["consent_required"]:
            consent = "given" if grant["consent"] else "missing"
        out.print(
            f"grant {grant['n']}: {grant['owner']} -> {grant['consumer']} on {grant['dataset']}"
            f" for {grant['purpose']!r}, {grant['status']}, until height"
            f" {grant['until_height']}, consent"
            f" {consent}"
            f", {grant['accesses']} accesses"
        )
    for access in accesses:
        out.print(
            f"access {access['n']}: {access['consumer_account']} read {access['rows']} rows of"
            f" {access['dataset']} under grant {access['grant']} at height {access['height']}"
            f" through {access['gateway']}"
        )


def _all(client: Client, read: Any) -> list[Any]:
    """Every record `read` pages through (LIST_MAX a page)."""
    records: list[Any] = []
    while True:
        page = ask(lambda: read(client, len(records)))
        if not page:
            return records
        records.extend(page)


def parameters_file(path: Path) -> dict[str, str | int]:
    """Query parameters from a JSON object in `path` (`-`: standard input), bounded."""
    document = read_json_input(
        path, size_max=PARAMS_FILE_BYTES_MAX, what="the parameters", option="--params-file"
    )
    if not isinstance(document, dict):
        raise InvalidArgumentError('the parameters are a JSON object: {"name": value, ...}')
    params: dict[str, str | int] = {}
    for name, value in document.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidArgumentError(f"parameter {name}: a query parameter is text or an integer")
        params[name] = value
    return params


def _parameters(items: list[str]) -> dict[str, str | int]:
    parsed = parse_arguments(items)
    params: dict[str, str | int] = {}
    for name, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidArgumentError(f"--param {name}: a query parameter is text or an integer")
        params[name] = value
    return params
