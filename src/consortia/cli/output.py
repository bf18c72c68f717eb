"""What the identity commands print: two consoles, warnings, progress bars and summary tables.

This module must never print a passphrase or a private key; it shows ids, fingerprints and
public keys only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from consortia.crypto import suite
from consortia.identity.consortium import ConsortiumSummary
from consortia.identity.genesis import node_id
from consortia.identity.keystore import KeyFileHeader
from consortia.identity.staging import leftovers

PREFIX: Final = 12  # hex characters of ids and fingerprints shown in tables

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}")


def warn_leftovers(target: Path) -> None:
    """Report partial folders an earlier, killed run left next to `target`."""
    for path in leftovers(target):
        warn(
            f"{path} was left by an earlier run that was killed before it finished; it holds"
            f" encrypted keys that nothing uses. Remove it: rm -rf -- '{path}'"
        )


@contextmanager
def progress_steps(total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar of `total` steps; the yielded function starts the next step."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("starting", total=total)
        done = 0

        def step(description: str) -> None:
            nonlocal done
            progress.update(task, completed=done, description=description)
            done += 1

        yield step
        progress.update(task, completed=total)


def print_key_header(header: KeyFileHeader) -> None:
    kdf = header.kdf
    out.print(f"format:     {header.format} v{header.version}")
    out.print(f"suite:      {header.suite}")
    out.print(f"purpose:    {header.purpose} ({header.algorithm})")
    out.print(f"public key: {header.public_key}")
    if header.purpose == "consensus":
        identity = node_id(suite(header.suite), header.public_key_bytes)
        out.print(f"node id:    {identity.hex()}")
    out.print(
        f"kdf:        {kdf.algorithm}, {kdf.memory_kib} KiB, {kdf.iterations} iterations,"
        f" {kdf.lanes} lanes"
    )


def print_summary(summary: ConsortiumSummary, title: str) -> None:
    table = Table(title=f"{title} {summary.chain_id} ({summary.suite}) in {summary.out_dir}")
    for column in ("node", "member", "node id", "address", "certificate"):
        table.add_column(column, no_wrap=True)
    for node in summary.nodes:
        table.add_row(
            node.name,
            node.member,
            node.node_id.hex()[:PREFIX] + "…",
            node.address,
            node.certificate_fingerprint[:PREFIX] + "…",
        )
    out.print(table)
    count = len(summary.nodes)
    out.print(f"{count} validator(s); tolerates {summary.faults_tolerated} Byzantine fault(s).")
    out.print(f"genesis hash: {summary.genesis_hash.hex()}")
