"""`consortia anchor`: a trade document's digest under the chain's suite, and whether a file
is the one a receivable anchored.

    anchor digest FILE (--home DIR | --suite intl|gm) [--json]
    anchor verify FILE --receivable ID --home DIR [--node I] [--verify] [--json]

`digest` prints what `receivable.issue` and `add_document` take ("<name>:<digest>"): the
suite's hash of the file's bytes (SHA-256 on an intl chain, SM3 on a gm chain). `verify`
hashes the file with the chain's suite (from DIR's genesis) and reads the receivable from a
node; with --verify the record is proven under a state root certified by the validators
(the SDK's LightClient, learnt from DIR's genesis), and only then is `verified: true`
printed. A file that is anchored exits 0; one that is not prints `not anchored` and exits 1;
an unknown receivable or a refused read is `error: <code>: <message>` and exit 2.

Must never send the file anywhere: only its digest is compared, on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from consortia.cli.output import out
from consortia.cli.tx_commands import HomeOption, JsonOption, NodeOption, ask, node_client
from consortia.client import LightClient
from consortia.client.anchors import (
    DOCUMENT_BYTES_MAX,
    RECEIVABLE,
    anchor_check,
    document_digest,
    receivable_key,
)
from consortia.cluster.home import ClusterHome
from consortia.crypto import suite as get_suite
from consortia.errors import InvalidArgumentError, NodeRefusalError
from consortia.identity import layout

anchor_app = typer.Typer(
    help="Digests of trade documents, and whether a file is the one a receivable anchored.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path,
    typer.Argument(help="The document.", exists=True, dir_okay=False, readable=True),
]
HASHES = {"intl": "SHA-256", "gm": "SM3"}


def register(app: typer.Typer) -> None:
    anchor_app.command("digest")(digest_command)
    anchor_app.command("verify")(verify_command)
    app.add_typer(anchor_app, name="anchor")


def digest_command(
    file: FileArgument,
    home: Annotated[
        Path | None, typer.Option("--home", help="A cluster's folder: its chain's suite.")
    ] = None,
    suite_name: Annotated[
        str | None, typer.Option("--suite", help="intl or gm (when there is no --home).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The file's digest under the chain's suite, as receivable documents anchor it."""
    if (home is None) == (suite_name is None):
        raise InvalidArgumentError("give --home DIR or --suite intl|gm (one of them)")
    name = ClusterHome.open(home).suite if home is not None else str(suite_name)
    suite = get_suite(name)
    digest = document_digest(suite, _read(file))
    if as_json:
        typer.echo(json.dumps({"file": str(file), "suite": suite.name, "digest": digest}))
        return
    _line(f"{digest}  {file} ({HASHES.get(suite.name, suite.name)})")


def verify_command(
    file: FileArgument,
    receivable: Annotated[str, typer.Option("--receivable", help="The receivable's id.")],
    home: HomeOption,
    node: NodeOption = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Trust no node: check the receivable's record against a header certified by"
            " the validators, learnt from the genesis (prints verified: true only then).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Whether FILE is a document the receivable anchored (exit 1 when it is not)."""
    cluster = ClusterHome.open(home)
    suite = get_suite(cluster.suite)
    digest = document_digest(suite, _read(file))
    with node_client(cluster, node) as client:
        if verify:
            client.light = LightClient.from_genesis_json(
                (cluster.root / layout.GENESIS_FILE).read_bytes()
            )
        answer = ask(
            lambda: client.state_answer(RECEIVABLE, receivable_key(receivable), verify=verify)
        )
    if answer.get("value") is None:
        raise NodeRefusalError(
            "unknown_receivable", f"no receivable {receivable!r} at height {answer.get('height')}"
        )
    result = {"file": str(file), **anchor_check(receivable, digest, suite.name, answer)}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(result)
    if not result["anchored"]:
        raise typer.Exit(1)


def _read(file: Path) -> bytes:
    size = file.stat().st_size
    if size > DOCUMENT_BYTES_MAX:
        raise InvalidArgumentError(
            f"{file} holds {size} bytes; anchor hashes files of at most {DOCUMENT_BYTES_MAX}"
        )
    return file.read_bytes()


def _line(text: str) -> None:
    out.print(text, markup=False)  # file names and document names are printed as they are


def _print(result: dict[str, Any]) -> None:
    suite = result["suite"]
    _line(f"file        {result['file']}")
    _line(f"digest      {result['digest']} ({HASHES.get(suite, suite)})")
    _line(f"receivable  {result['receivable']} (height {result['height']})")
    document = result["document"]
    if document is None:
        names = ", ".join(str(d["name"]) for d in result["documents"]) or "none"
        _line(f"not anchored: the receivable anchors {names}, none with this digest")
    else:
        _line(
            f"anchored    as {document['name']!r}, by {document['by']} at height"
            f" {document['height']}"
        )
    if result["verified"]:
        _line(f"state root  {result['state_root']}")
        _line("verified: true")
