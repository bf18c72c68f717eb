"""`consortia init`, `consortia keys generate|inspect` and `consortia demo`.

Thin commands over `consortia.identity`: they parse options, obtain the passphrase (file,
environment or terminal, never an argument), show progress and print summaries with Rich.
Every user mistake is a ConsortiaError that `consortia.cli.main.run` turns into one line.

These commands must never print or log a passphrase or a private key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from consortia.crypto import suite
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity import layout
from consortia.identity.consortium import (
    BFT_NODES_MIN,
    ConsortiumPlan,
    ConsortiumSummary,
    build_consortium,
    new_demo_passphrase,
    plan_consortium,
)
from consortia.identity.genesis import node_id
from consortia.identity.inspection import inspect_consortium, is_consortium
from consortia.identity.keystore import (
    KeyFileHeader,
    Purpose,
    load_key,
    new_keypair,
    read_key_header,
    seal_key,
    write_key_file,
)
from consortia.identity.passphrase import (
    PASSPHRASE_ENV,
    check_new_passphrase,
    obtain_passphrase,
    read_passphrase_file,
)

DEMO_NODES: Final = 4
DEMO_SUITE: Final = "intl"
DEMO_DIR: Final = Path("demo-consortium")
_PREFIX: Final = 12  # hex characters of ids and fingerprints shown in tables
_KEY_PURPOSES: Final[dict[str, Purpose]] = {"consensus": "consensus", "account": "account"}

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"Read the passphrase from this file (default: ${PASSPHRASE_ENV}, else ask).",
        show_default=False,
    ),
]
SuiteOption = Annotated[str, typer.Option("--suite", help="Crypto suite: intl or gm.")]

keys_app = typer.Typer(
    name="keys", help="Create and inspect encrypted key files.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add `init`, `demo` and the `keys` group to the `consortia` command."""
    app.command("init")(init_command)
    app.command("demo")(demo_command)
    app.add_typer(keys_app, name="keys")


def init_command(
    *,
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of validators.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to create.")],
    suite_name: SuiteOption = "intl",
    hosts: Annotated[
        str | None,
        typer.Option(help="HOST:PORT,... one per node, for nodes on several machines."),
    ] = None,
    chain_id: Annotated[
        str | None, typer.Option("--chain-id", help="Chain id (default: consortia-<random>).")
    ] = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create a new consortium: CA, node keys and certificates, genesis and node configs."""
    plan = plan_consortium(out, nodes=nodes, suite_name=suite_name, hosts=hosts, chain_id=chain_id)
    passphrase = obtain_passphrase(passphrase_file, creating=True)
    if nodes < BFT_NODES_MIN:
        _warn(
            f"{nodes} validator(s) tolerate no Byzantine fault; a BFT network needs at least"
            f" {BFT_NODES_MIN} (3f + 1) to survive one faulty node"
        )
    summary = _build(plan, passphrase)
    _print_summary(summary, "Created consortium")


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo directory.")] = DEMO_DIR,
) -> None:
    """Create a 4-validator demo consortium, or verify the one already in --out."""
    directory = Path(os.path.abspath(out))
    if is_consortium(directory):
        _verify_demo(directory)
    else:
        _create_demo(directory)
    _out.print(
        "[bold]The consortia network node arrives in a later release.[/] This demo creates and"
        " checks the consortium's identities; it starts no network."
    )


@keys_app.command("generate")
def keys_generate(
    suite_name: Annotated[str, typer.Option("--suite", help="Crypto suite: intl or gm.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file to create.")],
    purpose: Annotated[str, typer.Option(help="consensus or account.")] = "consensus",
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Generate a key pair and write it to an encrypted key file (never overwrites)."""
    suite(suite_name)
    key_purpose = _purpose(purpose)
    if out.exists() or out.is_symlink():
        raise AlreadyExistsError(f"{out} already exists; refusing to overwrite it")
    passphrase = obtain_passphrase(passphrase_file, creating=True)
    private_key, _public_key = new_keypair(suite_name, key_purpose)
    with _err.status("Deriving the key-encryption key (Argon2id)…"):
        sealed = seal_key(suite_name, key_purpose, private_key, passphrase)
    write_key_file(out, sealed)
    _print_header(read_key_header(out))
    _out.print(f"wrote {out} (mode 0600)")


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
    _print_header(header)
    if decrypt:
        passphrase = obtain_passphrase(passphrase_file, creating=False)
        with _err.status("Deriving the key-encryption key (Argon2id)…"):
            load_key(file, passphrase)
        _out.print("private key: decrypted; it matches the public key")
    else:
        _out.print("(header only, not yet authenticated: --decrypt checks it with the passphrase)")


def _purpose(text: str) -> Purpose:
    try:
        return _KEY_PURPOSES[text]
    except KeyError:
        raise InvalidArgumentError(
            f"--purpose {text!r}: choose one of {', '.join(_KEY_PURPOSES)}"
        ) from None


def _print_header(header: KeyFileHeader) -> None:
    kdf = header.kdf
    _out.print(f"format:     {header.format} v{header.version}")
    _out.print(f"suite:      {header.suite}")
    _out.print(f"purpose:    {header.purpose} ({header.algorithm})")
    _out.print(f"public key: {header.public_key}")
    if header.purpose == "consensus":
        identity = node_id(suite(header.suite), header.public_key_bytes)
        _out.print(f"node id:    {identity.hex()}")
    _out.print(
        f"kdf:        {kdf.algorithm}, {kdf.memory_kib} KiB, {kdf.iterations} iterations,"
        f" {kdf.lanes} lanes"
    )


def _create_demo(directory: Path) -> None:
    plan = plan_consortium(directory, nodes=DEMO_NODES, suite_name=DEMO_SUITE)
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if passphrase is None:
        passphrase = new_demo_passphrase()
        plan = dataclasses.replace(plan, write_demo_passphrase=True)
    check_new_passphrase(passphrase)
    summary = _build(plan, passphrase)
    _print_summary(summary, "Created demo consortium")
    if plan.write_demo_passphrase:
        _warn(
            f"the keys' passphrase is in {directory / layout.DEMO_PASSPHRASE_FILE} (mode 0600)."
            " That is for this demo only: never keep a real passphrase next to its keys."
        )


def _verify_demo(directory: Path) -> None:
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    demo_file = directory / layout.DEMO_PASSPHRASE_FILE
    if passphrase is None and demo_file.is_file():
        passphrase = read_passphrase_file(demo_file)
    with _err.status("Checking the consortium…"):
        summary = inspect_consortium(directory, passphrase)
    _print_summary(summary, "Verified existing consortium")
    if summary.keys_decrypted:
        _out.print("Every key decrypted and matches its public key.")
    else:
        _warn(f"keys not decrypted: set {PASSPHRASE_ENV} to check them too")


def _build(plan: ConsortiumPlan, passphrase: str) -> ConsortiumSummary:
    with _progress() as progress:
        task = progress.add_task("starting", total=plan.step_count)
        done = 0

        def step(description: str) -> None:
            nonlocal done
            progress.update(task, completed=done, description=description)
            done += 1

        summary = build_consortium(plan, passphrase, progress=step)
        progress.update(task, completed=plan.step_count)
    return summary


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_err,
        transient=True,
        disable=not _err.is_terminal,
    ) as progress:
        yield progress


def _print_summary(summary: ConsortiumSummary, title: str) -> None:
    table = Table(title=f"{title} {summary.chain_id} ({summary.suite}) in {summary.out_dir}")
    for column in ("node", "member", "node id", "address", "certificate"):
        table.add_column(column, no_wrap=True)
    for node in summary.nodes:
        table.add_row(
            node.name,
            node.member,
            node.node_id.hex()[:_PREFIX] + "…",
            node.address,
            node.certificate_fingerprint[:_PREFIX] + "…",
        )
    _out.print(table)
    count = len(summary.nodes)
    _out.print(
        f"{count} validator(s); tolerates {summary.faults_tolerated} Byzantine fault(s).",
        soft_wrap=True,
    )
    _out.print(f"genesis hash: {summary.genesis_hash.hex()}", soft_wrap=True)


def _warn(message: str) -> None:
    _err.print(f"[bold yellow]warning:[/] {message}")
