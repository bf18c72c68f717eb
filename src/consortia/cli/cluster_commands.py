"""`consortia cluster`: a local consortium on this machine, one background process per node.

    cluster up --home DIR [--nodes N] [--suite intl|gm] [--accounts A]
                                                          create it if DIR holds none (with A
                                                          benchmark accounts), start every
                                                          node, return once all serve
    cluster status --home DIR [--json]                    each node: id, API, pid, alive, height
    cluster stop --home DIR [--node I] [--kill]           SIGTERM (SIGKILL) and wait for exit
    cluster start --home DIR [--node I]                   start what is not running
    cluster down --home DIR                               stop every node
    cluster demo --home DIR                               `make run`: a live demo (dashboard.py)

Thin commands over `consortia.cluster`: they parse options, show progress and print tables.
These commands must never print a passphrase or a private key, nor pass one on a command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Final

import typer

from consortia.cli.identity_commands import DEMO_CUSTODY
from consortia.cli.output import out, print_summary, progress_steps, warn, warn_leftovers
from consortia.cluster.home import ClusterHome
from consortia.cluster.processes import START_TIMEOUT_S, node_states, stop_nodes
from consortia.cluster.setup import (
    DEMO_NODES,
    DEMO_SUITE,
    Created,
    create_cluster,
    plan_cluster,
    start_cluster,
)
from consortia.errors import InvalidArgumentError
from consortia.identity.bench_accounts import BENCH_ACCOUNTS_MAX, account_name, bench_account_count
from consortia.identity.consortium import BFT_NODES_MIN
from consortia.identity.inspection import is_consortium

cluster_app = typer.Typer(
    help="A local consortium: one background process per validator, on this machine.",
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path, typer.Option("--home", help="The cluster's folder (a consortium made by cluster up).")
]
NodeOption = Annotated[
    int | None, typer.Option("--node", help="Only node I (default: every node).", min=0)
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the nodes to serve.", min=1)
]
NODE_COLUMNS: Final = ("node", "node id", "API", "pid", "state", "height", "peers")
NODE_LINE: Final = "{:<5}{:<11}{:<24}{:<9}{:<14}{:<8}{}"
NODE_ID_SHOWN: Final = 8
FIRST_STEPS: Final = (
    "consortia tx transfer --home {home} --from alice --to bob --amount 5 --wait\n"
    "consortia account show --home {home} bob\n"
    "consortia cluster status --home {home}\n"
    "consortia cluster down --home {home}"
)


def register(app: typer.Typer) -> None:
    """Add `consortia cluster` (its `demo` command comes from dashboard.py)."""
    cluster_app.command("up")(up_command)
    cluster_app.command("status")(status_command)
    cluster_app.command("stop")(stop_command)
    cluster_app.command("start")(start_command)
    cluster_app.command("down")(down_command)
    app.add_typer(cluster_app, name="cluster")


def up_command(
    home: HomeOption,
    nodes: Annotated[
        int | None, typer.Option("--nodes", "-n", help=f"Validators (default {DEMO_NODES}).")
    ] = None,
    suite_name: Annotated[
        str | None, typer.Option("--suite", help=f"intl or gm (default {DEMO_SUITE}).")
    ] = None,
    accounts: Annotated[
        int | None,
        typer.Option(
            "--accounts",
            help="Also make this many funded benchmark accounts, bench-000000 ... (a new"
            " cluster only; their keys derive from one master key in DIR/bench).",
            min=1,
            max=BENCH_ACCOUNTS_MAX,
        ),
    ] = None,
    timeout_s: TimeoutOption = START_TIMEOUT_S,
) -> None:
    """Create a demo consortium in --home if it holds none, start every node, wait until all
    serve, and print their API URLs."""
    root = Path(os.path.abspath(home))
    if is_consortium(root):
        _check_matches(ClusterHome.open(root), nodes, suite_name, accounts)
    else:
        ensure_created(root, nodes or DEMO_NODES, suite_name or DEMO_SUITE, accounts or 0)
    cluster = ClusterHome.open(root)
    start_all(cluster, timeout_s)
    print_nodes(cluster)
    out.print(f"All {len(cluster.nodes)} nodes serve. Try:")
    out.print(FIRST_STEPS.format(home=_shown(root)), highlight=False)


def ensure_created(root: Path, nodes: int, suite_name: str, bench_accounts: int = 0) -> Created:
    """Make a new cluster in `root`, with progress, a summary and the custody warnings."""
    plan = plan_cluster(root, nodes=nodes, suite_name=suite_name, bench_accounts=bench_accounts)
    warn_leftovers(plan.out_dir)
    if nodes < BFT_NODES_MIN:
        warn(f"{nodes} validator(s) tolerate no Byzantine fault; a BFT network needs at least 4")
    with progress_steps(plan.step_count) as step:
        created = create_cluster(plan, progress=step)
    print_summary(created.summary, "Created consortium")
    out.print(
        "Demo accounts alice, bob, carol and dave hold 1,000,000.00 CNY each (100000000 fen);"
        f" their keys are in {root / 'accounts'}."
    )
    if bench_accounts:
        out.print(
            f"Benchmark accounts {account_name(0)} to {account_name(bench_accounts - 1)} hold"
            f" 1,000,000.00 CNY each; their keys derive from the master key in {root / 'bench'}"
            " (demo custody: whoever opens it signs for all of them)."
        )
    warn(DEMO_CUSTODY)
    if created.passphrase_file is not None:
        warn(
            f"the generated passphrase is in {created.passphrase_file} (mode 0600, readable by"
            " you only). That is for this demo only: never keep a real passphrase next to its"
            " keys."
        )
    return created


def start_all(cluster: ClusterHome, timeout_s: float, index: int | None = None) -> None:
    chosen = cluster.select(index)
    with progress_steps(2 * len(chosen)) as step:
        start_cluster(
            cluster,
            chosen,
            timeout_s=timeout_s,
            on_started=lambda node, pid: step(f"{node.name}: started (pid {pid})"),
            on_ready=lambda node, _status: step(f"{node.name}: serving"),
        )


def _check_matches(
    cluster: ClusterHome, nodes: int | None, suite_name: str | None, accounts: int | None = None
) -> None:
    if accounts is not None and accounts != bench_account_count(cluster.root):
        has = bench_account_count(cluster.root)
        raise InvalidArgumentError(
            f"{cluster.root} already holds a consortium (with {has} benchmark accounts);"
            " --accounts applies to a new one, since benchmark accounts are funded at genesis"
            " (use another --home)"
        )
    if nodes is not None and nodes != len(cluster.nodes):
        raise InvalidArgumentError(
            f"{cluster.root} already holds a consortium of {len(cluster.nodes)} validators;"
            " --nodes applies to a new one (use another --home)"
        )
    if suite_name is not None and suite_name != cluster.suite:
        raise InvalidArgumentError(
            f"{cluster.root} already holds a {cluster.suite} consortium; --suite applies to a"
            " new one (use another --home)"
        )


def _shown(root: Path) -> str:
    """`root` relative to the working directory when it lies below it (shorter to copy)."""
    try:
        return str(root.relative_to(Path.cwd()))
    except ValueError:
        return str(root)


def print_nodes(cluster: ClusterHome) -> None:
    """One line per node, in plain columns (they fit 80 columns and copy well)."""
    out.print(f"Cluster {cluster.chain_id} ({cluster.suite}) in {cluster.root}", highlight=False)
    out.print(NODE_LINE.format(*NODE_COLUMNS), style="bold", highlight=False)
    for state in node_states(cluster):
        node, status = state.node, state.status or {}
        if state.alive:
            shown = "serving" if state.status is not None else "not answering"
        else:
            shown = "stopped"
        peers = f"{len(status['peers'])}/{len(cluster.nodes) - 1}" if "peers" in status else "-"
        line = NODE_LINE.format(
            node.index,
            node.node_id[:NODE_ID_SHOWN] + "…",
            node.api_url,
            state.pid or "-",
            shown,
            status.get("height", "-"),
            peers,
        )
        out.print(line, highlight=False)


def status_command(
    home: HomeOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each node's index, id, API URL, process id, whether it runs, and its committed height."""
    cluster = ClusterHome.open(home)
    if not as_json:
        print_nodes(cluster)
        return
    nodes = [
        {
            "index": state.node.index,
            "node_id": state.node.node_id,
            "api": state.node.api_url,
            "pid": state.pid,
            "alive": state.alive,
            "height": None if state.status is None else state.status.get("height"),
        }
        for state in node_states(cluster)
    ]
    typer.echo(json.dumps({"nodes": nodes}))


def stop_command(
    home: HomeOption,
    node: NodeOption = None,
    kill: Annotated[
        bool, typer.Option("--kill", help="SIGKILL instead of SIGTERM (a crash, for tests).")
    ] = False,
) -> None:
    """Stop node I (or every node): SIGTERM, or SIGKILL with --kill, then wait for it to exit."""
    cluster = ClusterHome.open(home)
    chosen = cluster.select(node)
    stopped = stop_nodes(cluster, chosen, kill=kill)
    signal_name = "SIGKILL" if kill else "SIGTERM"
    for entry in chosen:
        said = f"stopped ({signal_name})" if entry in stopped else "was not running"
        out.print(f"{entry.name}: {said}")


def start_command(
    home: HomeOption, node: NodeOption = None, timeout_s: TimeoutOption = START_TIMEOUT_S
) -> None:
    """Start node I (or every node that is not running) and wait until it serves."""
    cluster = ClusterHome.open(home)
    start_all(cluster, timeout_s, node)
    print_nodes(cluster)


def down_command(home: HomeOption) -> None:
    """Stop every node of the cluster (SIGTERM) and wait for each to exit."""
    cluster = ClusterHome.open(home)
    stopped = stop_nodes(cluster, cluster.nodes)
    names = ", ".join(node.name for node in stopped) or "none was running"
    out.print(
        f"Stopped: {names}. The folder {cluster.root} keeps the chain; cluster up resumes it."
    )
