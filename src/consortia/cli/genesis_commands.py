"""`consortia genesis build` and `consortia node configure`: forming a consortium from the
keys institutions made themselves.

The coordinator gathers every institution's public requests and the CA's certificates into
one folder and runs `genesis build`; each institution then runs `node configure` for each of
its nodes, with the genesis, the CA certificate and its node's certificate. Neither command
reads a private key or asks for a passphrase.

These commands must never print or log a passphrase or a private key.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from consortia.cli.output import PREFIX, out, warn
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity.assembly import BFT_NODES_MIN, assemble_genesis, gather
from consortia.identity.certificates import load_certificate
from consortia.identity.consortium import check_chain_id
from consortia.identity.files import write_public_file
from consortia.identity.genesis import genesis_json, parse_genesis, read_genesis_file
from consortia.identity.joining import configure_node

genesis_app = typer.Typer(
    name="genesis", help="Build a genesis from the institutions' requests.", no_args_is_help=True
)
node_app = typer.Typer(name="node", help="Set up and run a node.", no_args_is_help=True)

CaCertificateOption = Annotated[
    Path, typer.Option("--ca-certificate", help="The consortium CA's root certificate (ca.crt).")
]


@genesis_app.command("build")
def genesis_build(
    from_dir: Annotated[
        Path,
        typer.Option(
            "--from",
            help="Folder of gathered requests (*.member.json, *.node.json) and the CA's"
            " certificates (NODE.crt).",
        ),
    ],
    ca_certificate: CaCertificateOption,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The genesis file to write.")],
    chain_id: Annotated[
        str | None, typer.Option("--chain-id", help="Chain id (default: consortia-<random>).")
    ] = None,
    regulator: Annotated[
        str | None, typer.Option(help="Add this regulator as a member (it holds no keys).")
    ] = None,
) -> None:
    """Build the genesis from every gathered request and certificate (public files only)."""
    chain = check_chain_id(chain_id)
    if out_file.exists() or out_file.is_symlink():
        raise AlreadyExistsError(f"{out_file} already exists; refusing to overwrite it")
    if not out_file.parent.is_dir():
        raise InvalidArgumentError(f"the parent directory {out_file.parent} does not exist")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    genesis = assemble_genesis(
        gather(from_dir),
        chain_id=chain,
        ca_certificate=load_certificate(ca_certificate),
        regulator=regulator,
        now=now,
    )
    document = genesis_json(genesis)
    _parsed, digest = parse_genesis(document)
    write_public_file(out_file, document)
    table = Table(title=f"Genesis of {genesis.chain_id} ({genesis.suite}) in {out_file}")
    for column in ("node", "member", "node id", "address", "certificate"):
        table.add_column(column, no_wrap=True)
    for validator in genesis.validators:
        table.add_row(
            validator.name,
            validator.member,
            validator.node_id[:PREFIX] + "…",
            validator.address,
            validator.certificate_fingerprint[:PREFIX] + "…",
        )
    out.print(table)
    if len(genesis.validators) < BFT_NODES_MIN:
        warn(f"{len(genesis.validators)} validator(s) tolerate no Byzantine fault")
    out.print(f"genesis hash: {digest.hex()}")
    out.print(
        "Send the genesis to every institution and tell each the genesis hash by a second"
        " channel; each runs consortia node configure --genesis-hash HASH."
    )


@node_app.command("configure")
def node_configure(
    node_dir: Annotated[
        Path, typer.Option("--node-dir", help="The node's folder (from keys generate).")
    ],
    genesis: Annotated[Path, typer.Option(help="The consortium's genesis.json.")],
    ca_certificate: CaCertificateOption,
    certificate: Annotated[
        Path, typer.Option(help="This node's certificate, as the CA issued it.")
    ],
    genesis_hash: Annotated[
        str | None,
        typer.Option(help="The genesis hash the coordinator announced (checked if given)."),
    ] = None,
    join: Annotated[
        bool,
        typer.Option(
            "--join",
            help="A node joining a running chain, added by an add_validator proposal"
            " (not in the genesis).",
        ),
    ] = False,
) -> None:
    """Write the node's config.toml and its copies of the genesis and certificates."""
    expected = _hash(genesis_hash) if genesis_hash is not None else None
    joined = configure_node(
        node_dir,
        genesis_document=read_genesis_file(genesis),
        expected_hash=expected,
        ca_certificate=load_certificate(ca_certificate),
        certificate=load_certificate(certificate),
        now=datetime.datetime.now(datetime.UTC),
        join=join,
    )
    out.print(
        f"configured node {joined.name} of {joined.member} ({joined.node_id.hex()[:PREFIX]}…)"
        f" at {joined.address}, API on {joined.api_listen}"
    )
    peers = len(joined.genesis.validators) - (0 if join else 1)
    out.print(f"{peers} peer(s) in {node_dir / 'config.toml'}")
    if join:
        out.print(
            "governance adds it with: kind=add_validator"
            f" node_id={joined.node_id.hex()} public_key={joined.public_key}"
            f" voting_power=1 member={joined.member}"
        )
    out.print(f"genesis hash: {joined.genesis_hash.hex()}")
    if expected is None:
        warn(
            "compare this genesis hash with the one the coordinator announced by a second"
            " channel (or pass --genesis-hash)"
        )


def _hash(text: str) -> bytes:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgumentError("--genesis-hash must be 64 hex digits")
    return bytes.fromhex(value)
