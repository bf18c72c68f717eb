"""`consortia ca init|issue|revoke`: the consortium's offline certificate authority.

The CA's folder and passphrase belong to whoever the consortium trusts to admit nodes, on a
machine off the network. `ca init` makes the folder under the CA's own passphrase; `ca issue`
checks a node's signed request and writes its certificate; `ca revoke` re-signs the CA's
revocation list. Each asks for the CA's passphrase (--passphrase-file, the environment or
the terminal) only after every other input has been checked.

These commands must never print or log a passphrase or a private key.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Annotated

import typer

from consortia.cli.keys_commands import PassphraseFileOption
from consortia.cli.output import err, out, warn_leftovers
from consortia.errors import AlreadyExistsError
from consortia.identity import layout
from consortia.identity.authority import Authority, create_authority, open_authority, revoke
from consortia.identity.authority import issue as issue_certificate
from consortia.identity.certificates import (
    certificate_pem,
    fingerprint,
    load_certificate,
    permitted_names,
)
from consortia.identity.consortium import check_chain_id, check_out_dir
from consortia.identity.files import write_public_file
from consortia.identity.passphrase import obtain_passphrase
from consortia.identity.requests import load_node_request
from consortia.identity.staging import staged_directory

ca_app = typer.Typer(
    name="ca", help="The consortium's offline certificate authority.", no_args_is_help=True
)

CaDirOption = Annotated[Path, typer.Option("--ca", help="The CA's folder (consortia ca init).")]


@ca_app.command("init")
def ca_init(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The CA folder to create.")],
    chain_id: Annotated[str, typer.Option("--chain-id", help="The chain the CA serves.")],
    permit: Annotated[
        str,
        typer.Option(
            help="Hosts the CA may certify, comma-separated: DNS names (with their"
            " subdomains), IPv4 addresses or networks (10.20.0.0/16).",
        ),
    ],
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create an offline CA: its key under the CA's own passphrase, and its root certificate."""
    chain = check_chain_id(chain_id)
    permitted = permitted_names(permit.split(","))
    directory = Path(os.path.abspath(out_dir))
    check_out_dir(directory)
    warn_leftovers(directory)
    passphrase = obtain_passphrase(passphrase_file, creating=True, label="New passphrase of the CA")
    now = _now()
    with (
        err.status("Deriving the key-encryption key (Argon2id)…"),
        staged_directory(directory) as staging,
    ):
        authority = create_authority(
            staging, chain_id=chain, permitted=permitted, passphrase=passphrase, now=now
        )
    out.print(f"CA for {chain} in {directory}: keep the folder and its passphrase offline")
    out.print(f"root certificate: {directory / layout.CA_CERTIFICATE_FILE}")
    out.print(f"fingerprint: {fingerprint(authority.certificate)}")


@ca_app.command("issue")
def ca_issue(
    ca_dir: CaDirOption,
    request: Annotated[Path, typer.Option(help="A node's request (NODE.node.json).")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Certificate to write (default: NODE.crt beside it)."),
    ] = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Check a node's signed request and issue its TLS certificate."""
    node = load_node_request(request)
    target = out_file or request.parent / layout.node_certificate_file(node.request.node)
    if target.exists() or target.is_symlink():
        raise AlreadyExistsError(f"{target} already exists; refusing to overwrite it")
    authority = _open(ca_dir, passphrase_file)
    certificate = issue_certificate(authority, node, _now())
    write_public_file(target, certificate_pem(certificate))
    asked = node.request
    out.print(f"issued {target} for node {asked.node} of {asked.member} at {asked.address}")
    out.print(f"node id: {asked.node_id}")
    out.print(f"serial: {certificate.serial_number:x}")
    out.print(f"fingerprint: {fingerprint(certificate)}")


@ca_app.command("revoke")
def ca_revoke(
    ca_dir: CaDirOption,
    certificate_file: Annotated[
        Path, typer.Option("--certificate", help="The certificate to revoke.")
    ],
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Revoke a certificate the CA issued: re-sign the CA's revocation list (ca.crl)."""
    certificate = load_certificate(certificate_file)
    authority = _open(ca_dir, passphrase_file)
    crl = revoke(authority, certificate, _now())
    out.print(f"revoked certificate {certificate.serial_number:x}")
    out.print(
        f"{ca_dir / layout.CA_CRL_FILE} now lists {len(crl)} certificate(s); send it to every node"
    )


def _open(ca_dir: Path, passphrase_file: Path | None) -> Authority:
    passphrase = obtain_passphrase(passphrase_file, creating=False, label="Passphrase of the CA")
    with err.status("Opening the CA key (Argon2id)…"):
        return open_authority(ca_dir, passphrase, _now())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
