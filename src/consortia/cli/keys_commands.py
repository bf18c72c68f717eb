"""`consortia keys generate|inspect`: key files, and an institution's own keys.

`keys generate --out FILE` writes one encrypted key file. `keys generate --institution DIR`
is how an institution makes its keys for a new consortium on its own machine: with `--member`
alone, the member's account key (member passphrase); with `--node` and `--address` too, a
node's consensus and TLS keys (that node's passphrase). Either way it writes a signed request
into DIR/public/ and prints its SHA-256, to read out to the coordinator by a second channel.

These commands must never print or log a passphrase or a private key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer

from consortia.cli.output import err, out, print_key_header, warn_leftovers
from consortia.crypto import suite
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity.institution import check_name, generate_member, generate_node
from consortia.identity.keystore import (
    Purpose,
    load_key,
    new_keypair,
    read_key_header,
    seal_key,
    write_key_file,
)
from consortia.identity.passphrase import PASSPHRASE_ENV, obtain_passphrase

_KEY_PURPOSES: Final[dict[str, Purpose]] = {
    "consensus": "consensus",
    "account": "account",
    "encryption": "encryption",
}

PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"Read the passphrase from this file, mode 0600 (default: ${PASSPHRASE_ENV},"
        " else ask).",
        show_default=False,
    ),
]

keys_app = typer.Typer(
    name="keys", help="Create and inspect encrypted key files.", no_args_is_help=True
)


@keys_app.command("generate")
def keys_generate(
    suite_name: Annotated[str, typer.Option("--suite", help="Crypto suite: intl or gm.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="One key file to create.")
    ] = None,
    purpose: Annotated[
        str, typer.Option(help="With --out: consensus, account or encryption.")
    ] = "consensus",
    institution: Annotated[
        Path | None,
        typer.Option(help="The institution's own folder: make its keys and requests there."),
    ] = None,
    member: Annotated[
        str | None, typer.Option(help="With --institution: the member institution's name.")
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="With --institution: make this node's keys.")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="With --node: HOST:PORT where peers reach the node.")
    ] = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Generate keys, encrypted under a passphrase (never overwrites anything)."""
    suite(suite_name)
    if (out_file is None) == (institution is None):
        raise InvalidArgumentError("give either --out FILE (one key) or --institution DIR")
    if out_file is not None:
        if member is not None or node is not None or address is not None:
            raise InvalidArgumentError("--member, --node and --address go with --institution")
        _generate_file(suite_name, out_file, _purpose(purpose), passphrase_file)
        return
    assert institution is not None
    if member is None:
        raise InvalidArgumentError("--institution needs --member NAME")
    check_name(member, "--member")
    if (node is None) != (address is None):
        raise InvalidArgumentError("--node and --address go together")
    if node is None:
        _generate_member(institution, member, suite_name, passphrase_file)
    else:
        assert address is not None
        _generate_node(institution, member, node, address, suite_name, passphrase_file)


@keys_app.command("inspect")
def keys_inspect(
    file: Annotated[Path, typer.Argument(help="Key file to inspect.")],
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Also decrypt it and check the key pair.")
    ] = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Show what a key file holds (from its header); with --decrypt, check it opens."""
    header = read_key_header(file)
    print_key_header(header)
    if decrypt:
        passphrase = obtain_passphrase(passphrase_file, creating=False)
        with err.status("Deriving the key-encryption key (Argon2id)…"):
            load_key(file, passphrase)
        out.print("private key: decrypted; it matches the public key")
    else:
        out.print("(header only, not yet authenticated: --decrypt checks it with the passphrase)")


def _generate_file(
    suite_name: str, path: Path, purpose: Purpose, passphrase_file: Path | None
) -> None:
    if path.exists() or path.is_symlink():
        raise AlreadyExistsError(f"{path} already exists; refusing to overwrite it")
    passphrase = obtain_passphrase(passphrase_file, creating=True)
    private_key, _public_key = new_keypair(suite_name, purpose)
    with err.status("Deriving the key-encryption key (Argon2id)…"):
        sealed = seal_key(suite_name, purpose, private_key, passphrase)
    write_key_file(path, sealed)
    print_key_header(read_key_header(path))
    out.print(f"wrote {path} (mode 0600)")


def _generate_member(
    institution: Path, member: str, suite_name: str, passphrase_file: Path | None
) -> None:
    passphrase = obtain_passphrase(
        passphrase_file, creating=True, label=f"New passphrase of member {member}"
    )
    with err.status("Deriving the key-encryption key (Argon2id)…"):
        generated = generate_member(
            institution, member=member, suite_name=suite_name, passphrase=passphrase
        )
    out.print(f"member {member}: account key in {institution}/accounts (member passphrase)")
    out.print(f"account public key: {generated.public_key.hex()}")
    _print_request(generated.request_path, generated.request_digest)


def _generate_node(
    institution: Path,
    member: str,
    node: str,
    address: str,
    suite_name: str,
    passphrase_file: Path | None,
) -> None:
    check_name(node, "--node")
    warn_leftovers(institution / node)
    passphrase = obtain_passphrase(
        passphrase_file, creating=True, label=f"New passphrase of node {node}"
    )
    with err.status("Deriving the key-encryption keys (Argon2id)…"):
        generated = generate_node(
            institution,
            member=member,
            node=node,
            address=address,
            suite_name=suite_name,
            passphrase=passphrase,
        )
    assert generated.node_id is not None
    out.print(f"node {node}: consensus and TLS keys in {institution / node} (node passphrase)")
    out.print(f"node id: {generated.node_id.hex()}")
    _print_request(generated.request_path, generated.request_digest)


def _print_request(path: Path, digest: str) -> None:
    out.print(f"request: {path} (public: send it to the coordinator)")
    out.print(f"request sha-256: {digest}  (read it out to the coordinator by a second channel)")


def _purpose(text: str) -> Purpose:
    try:
        return _KEY_PURPOSES[text]
    except KeyError:
        raise InvalidArgumentError(
            f"--purpose {text!r}: choose one of {', '.join(_KEY_PURPOSES)}"
        ) from None
