"""`consortia init` and `consortia demo`, and the registration of every identity command.

Thin commands over `consortia.identity`: they parse options, obtain passphrases (files, the
environment or the terminal, never an argument), show progress and print summaries. The other
identity commands live beside this module: `keys` (keys_commands.py), `ca` (ca_commands.py),
`genesis` and `node` (genesis_commands.py). Every user mistake is a ConsortiaError that
`consortia.cli.main.run` turns into one line.

These commands must never print or log a passphrase or a private key.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Annotated, Final

import typer

from consortia.cli.output import out, print_summary, progress_steps, warn, warn_leftovers
from consortia.errors import InvalidArgumentError, PassphraseUnavailableError
from consortia.identity import layout
from consortia.identity.authority import Authority, open_authority
from consortia.identity.consortium import (
    BFT_NODES_MIN,
    ConsortiumPlan,
    build_consortium,
    collect_passphrases,
    demo_custody_passphrase,
    plan_consortium,
)
from consortia.identity.custody import CA_HOLDER, OnePassphrase, PassphraseDirectory, Passphrases
from consortia.identity.inspection import inspect_consortium, is_consortium
from consortia.identity.passphrase import PASSPHRASE_ENV, obtain_passphrase, read_passphrase_file

DEMO_NODES: Final = 4
DEMO_SUITE: Final = "intl"
DEMO_DIR: Final = Path("demo-consortium")
DEMO_CUSTODY: Final = (
    "demo custody: one passphrase protects the CA, every node's and every member's keys."
    " For a test network only; without --demo, `consortia init` gives each its own."
)

SuiteOption = Annotated[str, typer.Option("--suite", help="Crypto suite: intl or gm.")]


def register(app: typer.Typer) -> None:
    """Add `init`, `demo` and the `keys`, `ca`, `genesis` and `node` groups to `consortia`."""
    from consortia.cli import ca_commands, genesis_commands, keys_commands, node_commands

    app.command("init")(init_command)
    app.command("demo")(demo_command)
    app.add_typer(keys_commands.keys_app, name="keys")
    app.add_typer(ca_commands.ca_app, name="ca")
    app.add_typer(genesis_commands.genesis_app, name="genesis")
    node_commands.register(genesis_commands.node_app)
    app.add_typer(genesis_commands.node_app, name="node")


def init_command(
    *,
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of validators.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to create.")],
    suite_name: SuiteOption = "intl",
    hosts: Annotated[
        str | None,
        typer.Option(help="HOST:PORT,... one per node, for nodes on several machines."),
    ] = None,
    chain_id: Annotated[
        str | None, typer.Option("--chain-id", help="Chain id (default: consortia-<random>).")
    ] = None,
    passphrase_dir: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-dir",
            help="Folder of passphrase files, one per holder: ca.passphrase, node0.passphrase,"
            " bank-0.passphrase, ... (mode 0600; missing ones are asked for on a terminal).",
            show_default=False,
        ),
    ] = None,
    ca_dir: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="Use this existing CA folder (consortia ca init) instead of making a new CA.",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help=f"Demo custody: one passphrase for everything (--passphrase-file,"
            f" ${PASSPHRASE_ENV}, or a generated one written to DIR/.demo-passphrase).",
        ),
    ] = False,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help="With --demo: the one passphrase.", show_default=False
        ),
    ] = None,
) -> None:
    """Create a test consortium on one machine: CA, institutions' keys, genesis, node configs."""
    plan = plan_consortium(
        out_dir, nodes=nodes, suite_name=suite_name, hosts=hosts, chain_id=chain_id
    )
    warn_leftovers(plan.out_dir)
    if demo:
        if ca_dir is not None or passphrase_dir is not None:
            raise InvalidArgumentError(
                "--demo uses one passphrase; it takes no --ca or --passphrase-dir"
            )
        _create_with_one_passphrase(plan, passphrase_file, "Created consortium")
        return
    if passphrase_file is not None:
        raise InvalidArgumentError(
            "--passphrase-file gives one passphrase, but init gives the CA, each node and each"
            " member its own: use --passphrase-dir DIR, or --demo for a test network"
        )
    source = PassphraseDirectory(passphrase_dir)
    if passphrase_dir is None and not sys.stdin.isatty():
        raise PassphraseUnavailableError(
            "init gives the CA, each node and each member its own passphrase: pass"
            " --passphrase-dir DIR holding ca.passphrase, node0.passphrase, bank-0.passphrase,"
            " ... (mode 0600), run on a terminal to be asked, or use --demo on a test network"
        )
    authority = _open_ca(ca_dir, source) if ca_dir is not None else None
    passphrases = collect_passphrases(plan, source, with_ca=authority is None)
    _warn_small(nodes)
    with progress_steps(plan.step_count) as step:
        summary = build_consortium(plan, passphrases, authority=authority, progress=step)
    print_summary(summary, "Created consortium")
    if authority is None:
        out.print(
            f"The CA is in {plan.out_dir / layout.CA_DIR}: move it to an offline machine."
            f" Send each institution only its folder ({plan.out_dir}/bank-I)."
        )


def demo_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Demo directory.")] = DEMO_DIR,
) -> None:
    """Create a 4-validator demo consortium (demo custody), or verify the one already in --out."""
    directory = Path(os.path.abspath(out_dir))
    if is_consortium(directory):
        _verify_demo(directory)
    else:
        plan = plan_consortium(directory, nodes=DEMO_NODES, suite_name=DEMO_SUITE)
        warn_leftovers(plan.out_dir)
        _create_with_one_passphrase(plan, None, "Created demo consortium")
    out.print(
        "This command creates and checks a consortium's identities; it starts no network."
        " For a live network with demo accounts: [bold]consortia cluster up --home DIR[/],"
        " or [bold]make run[/] for a dashboard."
    )


def _create_with_one_passphrase(
    plan: ConsortiumPlan, passphrase_file: Path | None, title: str
) -> None:
    passphrase, written = demo_custody_passphrase(passphrase_file)
    source = OnePassphrase(passphrase)
    passphrases = collect_passphrases(plan, source, with_ca=True)
    _warn_small(len(plan.nodes))
    with progress_steps(plan.step_count) as step:
        summary = build_consortium(plan, passphrases, demo_passphrase=written, progress=step)
    print_summary(summary, title)
    warn(DEMO_CUSTODY)
    if written is not None:
        warn(
            f"the passphrase is in {plan.out_dir / layout.DEMO_PASSPHRASE_FILE} (mode 0600)."
            " That is for this demo only: never keep a real passphrase next to its keys."
        )


def _verify_demo(directory: Path) -> None:
    demo_file = directory / layout.DEMO_PASSPHRASE_FILE
    passphrase: str | None = None
    if os.environ.get(PASSPHRASE_ENV):
        passphrase = obtain_passphrase(None, creating=False)
    elif demo_file.is_file():
        passphrase = read_passphrase_file(demo_file)
    source: Passphrases | None = OnePassphrase(passphrase) if passphrase is not None else None
    with progress_steps(1) as step:
        step("checking the consortium")
        summary = inspect_consortium(directory, source)
    print_summary(summary, "Verified existing consortium")
    if summary.keys_decrypted:
        out.print(
            "Every key decrypted and matches its public key: the CA's, each node's consensus"
            " and TLS keys, each member's account keys."
        )
    else:
        warn(f"keys not decrypted: set {PASSPHRASE_ENV} to check them too")


def _open_ca(ca_dir: Path, source: Passphrases) -> Authority:
    passphrase = source.passphrase(CA_HOLDER, creating=False)
    return open_authority(ca_dir, passphrase, datetime.datetime.now(datetime.UTC))


def _warn_small(nodes: int) -> None:
    if nodes < BFT_NODES_MIN:
        warn(
            f"{nodes} validator(s) tolerate no Byzantine fault; a BFT network needs at least"
            f" {BFT_NODES_MIN} (3f + 1) to survive one faulty node"
        )
