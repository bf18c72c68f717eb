"""Bringing a local cluster up and down: a new consortium with demo accounts when the folder
holds none, every node started in the background and serving, every node stopped.

A new cluster is a consortium in demo custody (one passphrase for every key, as
`consortia init --demo`) with the demo accounts alice, bob, carol and dave, each funded with
1,000,000 CNY at genesis (their keys in DIR/accounts), and, when asked, benchmark accounts
bench-000000 ... funded the same way, their keys derived from one master key in DIR/bench
(identity/bench_accounts.py). The passphrase is CONSORTIA_PASSPHRASE
when it is set; otherwise a random one, written to DIR/.demo-passphrase (mode 0600) so that
the nodes, `consortia tx` and later `cluster start` can open the keys without typing. That
file is the one documented exception to keeping secrets out of files, for a demo only.

`consortia cluster demo` reuses its folder when it can and makes it again when it is stale:
only a folder in generated demo custody (it has .demo-passphrase) is ever removed, so a
consortium whose passphrase someone chose is never deleted.

This module must never put a passphrase anywhere but the demo passphrase file, and never
remove a folder that is not a demo consortium.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from consortia.cluster.home import ClusterHome, NodeEntry, demo_passphrase
from consortia.cluster.processes import (
    START_TIMEOUT_S,
    node_passphrase_file,
    running_pid,
    start_node,
    stop_nodes,
    wait_serving,
)
from consortia.errors import ConsortiaError
from consortia.identity import layout
from consortia.identity.consortium import (
    ConsortiumPlan,
    ConsortiumSummary,
    build_consortium,
    collect_passphrases,
    demo_custody_passphrase,
    plan_consortium,
)
from consortia.identity.custody import OnePassphrase
from consortia.identity.keystore import DEFAULT_ARGON2, Argon2Cost, load_key

DEMO_NODES: Final = 4
GENESIS_WAIT_S_PER_MB: Final = 10.0
DEMO_SUITE: Final = "intl"
Step = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Created:
    summary: ConsortiumSummary
    passphrase_file: Path | None  # where the generated passphrase was written, if it was


def plan_cluster(
    root: Path, *, nodes: int, suite_name: str, bench_accounts: int = 0
) -> ConsortiumPlan:
    """The plan of a new cluster in `root` (validators, the demo accounts and
    `bench_accounts` benchmark accounts); writes nothing."""
    return plan_consortium(
        root,
        nodes=nodes,
        suite_name=suite_name,
        demo_accounts=layout.DEMO_ACCOUNTS,
        bench_accounts=bench_accounts,
    )


def create_cluster(
    plan: ConsortiumPlan, *, progress: Step | None = None, cost: Argon2Cost = DEFAULT_ARGON2
) -> Created:
    """Make the planned cluster in demo custody (see the module docstring)."""
    passphrase, written = demo_custody_passphrase()
    passphrases = collect_passphrases(plan, OnePassphrase(passphrase), with_ca=True)
    summary = build_consortium(
        plan, passphrases, demo_passphrase=written, cost=cost, progress=progress
    )
    where = plan.out_dir / layout.DEMO_PASSPHRASE_FILE if written is not None else None
    return Created(summary, where)


def start_cluster(
    home: ClusterHome,
    nodes: Iterable[NodeEntry] | None = None,
    *,
    timeout_s: float = START_TIMEOUT_S,
    on_started: Callable[[NodeEntry, int], None] | None = None,
    on_ready: Callable[[NodeEntry, dict[str, Any]], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Start every node of `nodes` (default: all) that is not running and wait until each
    serves its API; their statuses by index."""
    chosen = tuple(home.nodes if nodes is None else nodes)
    passphrase_file = node_passphrase_file(home)
    for node in chosen:
        pid = start_node(home, node, passphrase_file)
        if on_started is not None:
            on_started(node, pid)
    # A large genesis (benchmark accounts) takes each node a while to load and hash the first
    # time: the wait grows with it (10 s a MB).
    genesis_mb = (home.root / layout.GENESIS_FILE).stat().st_size / 1e6
    timeout_s += genesis_mb * GENESIS_WAIT_S_PER_MB
    return wait_serving(home, chosen, timeout_s=timeout_s, on_ready=on_ready)


def stop_cluster(home: ClusterHome, *, kill: bool = False) -> list[NodeEntry]:
    """Stop every running node; those that were running."""
    return stop_nodes(home, home.nodes, kill=kill)


def stale_reason(root: Path) -> str | None:
    """Why the folder `root` cannot serve the demo as it is; None when it can."""
    try:
        home = ClusterHome.open(root)
        missing = [
            name
            for name in layout.DEMO_ACCOUNTS
            if not (root / layout.account_key_file(name)).is_file()
        ]
        if missing:
            return f"it has no key for the demo account(s) {', '.join(missing)}"
        passphrase = demo_passphrase(home)
        load_key(root / layout.account_key_file(layout.DEMO_ACCOUNTS[0]), passphrase)
    except ConsortiaError as error:
        return str(error)
    return None


def may_recreate(root: Path) -> bool:
    """Whether `root` is a demo consortium with a generated passphrase (safe to remove)."""
    return (root / layout.DEMO_PASSPHRASE_FILE).is_file()


def remove_demo(root: Path) -> None:
    """Stop whatever runs from the demo folder `root` and remove it."""
    assert may_recreate(root), f"{root} is not a generated demo consortium"
    try:
        home = ClusterHome.open(root)
    except ConsortiaError:
        home = None
    if home is not None and any(running_pid(home, node) for node in home.nodes):
        stop_cluster(home)
    shutil.rmtree(root)
