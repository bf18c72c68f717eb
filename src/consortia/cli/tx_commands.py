"""`consortia tx` and `consortia account`: sign and send transactions to a local cluster, and
read accounts, through the SDK (`consortia.client`).

    tx transfer --home DIR --from alice --to bob --amount 5 [--currency CNY] [--node I]
                [--wait] [--json]
    tx call --home DIR --from NAME --contract C --method M [--arg key=value ...] [--node I]
            [--wait] [--json]
    account show --home DIR NAME [--node I] [--json]

Amounts are integers in minor units (fen for CNY), as everywhere on the ledger. `--from`
names an account whose key is in DIR (`alice`, `bank-0.treasury` or just `bank-0`), opened
with the demo passphrase (CONSORTIA_PASSPHRASE, --passphrase-file or DIR/.demo-passphrase);
`--arg` values follow `consortia.cluster.accounts` (integers, true/false, comma lists, text,
or `key:=JSON`). Without --node, the first node that answers is used.

A refusal by the node, or a transaction that failed in its block, is one line
`error: <the node's code>: <message>` and exit status 2. These commands must never print a
passphrase or a private key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from consortia.cli.output import out
from consortia.client import Client, ClientError, LightClient, VerificationError
from consortia.cluster.accounts import open_signer, parse_arguments
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.cluster.processes import fetch_status
from consortia.errors import NodeRefusalError, NodeUnavailableError
from consortia.identity import layout
from consortia.types.primitives import CURRENCY_DEFAULT

WAIT_S = 60.0
T = TypeVar("T")

tx_app = typer.Typer(help="Sign and send transactions to a local cluster.", no_args_is_help=True)
account_app = typer.Typer(help="Read accounts on a local cluster.", no_args_is_help=True)

HomeOption = Annotated[Path, typer.Option("--home", help="The cluster's folder.")]
NodeOption = Annotated[
    int | None, typer.Option("--node", help="Ask node I (default: the first that answers).", min=0)
]
FromOption = Annotated[
    str, typer.Option("--from", help="The signing account: alice, bank-0.treasury, bank-0, ...")
]
WaitOption = Annotated[bool, typer.Option("--wait", help="Wait until it is in a committed block.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File holding the passphrase (default: $CONSORTIA_PASSPHRASE, then"
        " DIR/.demo-passphrase).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    tx_app.command("transfer")(transfer_command)
    tx_app.command("call")(call_command)
    account_app.command("show")(account_show_command)
    app.add_typer(tx_app, name="tx")
    app.add_typer(account_app, name="account")


def transfer_command(
    home: HomeOption,
    sender: FromOption,
    to: Annotated[str, typer.Option("--to", help="The receiving account id.")],
    amount: Annotated[int, typer.Option("--amount", help="Minor units (fen for CNY).", min=1)],
    currency: Annotated[
        str, typer.Option("--currency", help="Three capital letters.")
    ] = CURRENCY_DEFAULT,
    node: NodeOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Transfer --amount of --currency from --from to --to (asset.transfer)."""
    args = {"to": to, "amount": amount, "currency": currency}
    send_call(home, node, sender, ("asset", "transfer", args), wait, as_json, passphrase_file)


def call_command(
    home: HomeOption,
    sender: FromOption,
    contract: Annotated[str, typer.Option("--contract", help="asset, receivable, identity, ...")],
    method: Annotated[str, typer.Option("--method", help="The contract's method.")],
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="key=value (integers, true/false, a,b lists, text) or key:=JSON; repeatable.",
        ),
    ] = None,
    node: NodeOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Call any contract method, signed by --from (docs/contracts.md lists them)."""
    args = parse_arguments(arg or [])
    send_call(home, node, sender, (contract, method, args), wait, as_json, passphrase_file)


def account_show_command(
    home: HomeOption,
    name: Annotated[str, typer.Argument(help="An account id (alice, bank-0.treasury) or member.")],
    node: NodeOption = None,
    as_json: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Trust no node: check the answer's proofs against a header certified by the"
            " validators, learnt from the genesis (prints verified: true only then).",
        ),
    ] = False,
) -> None:
    """An account's balance (CNY, in fen), nonce, status and roles."""
    cluster = ClusterHome.open(home)
    account_id = _account_id(cluster.root, name)
    with node_client(cluster, node) as client:
        if verify:
            client.light = LightClient.from_genesis_json(
                (cluster.root / layout.GENESIS_FILE).read_bytes()
            )
        record = ask(lambda: client.account(account_id, verify=verify))
    if as_json:
        typer.echo(json.dumps(record))
        return
    balance = int(record.get("balance", 0))
    out.print(f"account   {record.get('id', account_id)}")
    out.print(f"balance   {balance} fen ({_cny(balance)} {CURRENCY_DEFAULT})")
    others = {c: v for c, v in sorted(record.get("balances", {}).items()) if c != CURRENCY_DEFAULT}
    for currency, value in others.items():
        out.print(f"          {value} {currency} (minor units)")
    out.print(f"nonce     {record.get('nonce')}")
    out.print(f"status    {record.get('status')}")
    out.print(f"roles     {', '.join(record.get('roles') or []) or '-'}")
    out.print(f"member    {record.get('member') or '-'}")
    if verify:
        out.print(f"height    {record['height']} (state root {record['header']['state_root']})")
        out.print("verified: true")


def _account_id(root: Path, name: str) -> str:
    """`name`, or a member's treasury when `name` is the member's folder."""
    if (
        "." not in name
        and (root / name / layout.account_key_file(layout.TREASURY_ACCOUNT)).exists()
    ):
        return layout.account_id(name, layout.TREASURY_ACCOUNT)
    return name


def _cny(minor_units: int) -> str:
    sign = "-" if minor_units < 0 else ""
    whole, cents = divmod(abs(minor_units), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def node_client(cluster: ClusterHome, index: int | None) -> Client:
    """A client of node `index`, or of the first node that answers."""
    for node in cluster.select(index):
        if fetch_status(node) is not None:
            return Client(node.api_url, timeout_s=10.0)
    which = f"node {index}" if index is not None else "no node"
    raise NodeUnavailableError(
        f"{which} of the cluster in {cluster.root} answers; start it with"
        f" consortia cluster {'start' if index is not None else 'up'} --home {cluster.root}"
    )


def ask(request: Callable[[], T]) -> T:
    """`request()`, with the SDK's errors as one-line command errors."""
    try:
        return request()
    except VerificationError as error:
        raise NodeRefusalError(error.code, str(error)) from None
    except ClientError as error:
        if error.code == "unreachable":
            raise NodeUnavailableError(f"the node stopped answering: {error.message}") from None
        raise NodeRefusalError(error.code, error.message) from None


def send_call(
    home: Path,
    index: int | None,
    sender: str,
    call: tuple[str, str, dict[str, Any]],
    wait: bool,
    as_json: bool,
    passphrase_file: Path | None,
) -> None:
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    contract, method, args = call
    with node_client(cluster, index) as client:
        chain = ask(client.chain)
        signer = open_signer(cluster.root, sender, chain, passphrase)
        record = ask(
            lambda: client.call(signer, contract, method, args, wait=wait, timeout_s=WAIT_S)
        )
    if as_json:
        typer.echo(json.dumps(record))
    report(record, as_json)


def report(record: dict[str, Any], quiet: bool) -> None:
    tx_hash, status = record["tx_hash"], record["status"]
    receipt = record.get("receipt") or {}
    if status == "failed":
        raise NodeRefusalError(
            str(receipt.get("code", "failed")),
            f"{receipt.get('message') or 'the transaction failed'} (transaction {tx_hash}"
            f" failed at height {record.get('height')})",
        )
    if quiet:
        return
    if status == "pending":
        out.print(f"submitted {tx_hash} (pending; --wait waits for its block)")
        return
    out.print(
        f"committed {tx_hash} at height {record.get('height')} (index {record.get('index')},"
        f" gas {receipt.get('gas_used')})"
    )
    if receipt.get("result") is not None:
        out.print(f"result: {json.dumps(receipt['result'])}")
    for event in receipt.get("events") or []:
        out.print(f"event:  {json.dumps(event)}")
