"""The `consortia` command.

Every user mistake becomes one line on stderr, `error: <code>: <message>`, and exit status 2;
no traceback is shown for a ConsortiaError. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from consortia import PROTOCOL_VERSION, __version__
from consortia.errors import ConsortiaError

# Exit statuses: 0 success, 1 a check found a problem (e.g. a simulation found violations),
# 2 the command could not do what was asked (bad input, wrong passphrase, ...).
EXIT_USER_ERROR = 2

app = typer.Typer(
    name="consortia",
    help="consortia: a permissioned BFT ledger for financial institutions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """consortia: a permissioned BFT ledger for financial institutions."""


@app.command()
def version() -> None:
    """Print the software and protocol versions."""
    typer.echo(f"consortia {__version__} (protocol version {PROTOCOL_VERSION})")


def _register_commands() -> None:
    # Imported here so that `consortia --help` stays fast and each command group owns its module.
    from consortia.cli import (
        anchor_commands,
        bench_commands,
        cluster_commands,
        dashboard,
        datashare_commands,
        escrow_commands,
        events_commands,
        gateway_commands,
        identity_commands,
        mirror_commands,
        reconcile_commands,
        record_commands,
        relay_commands,
        sim_commands,
        tx_commands,
    )

    identity_commands.register(app)
    sim_commands.register(app)
    cluster_commands.register(app)
    dashboard.register()
    tx_commands.register(app)
    anchor_commands.register(app)
    bench_commands.register(app)
    events_commands.register(app)
    mirror_commands.register(app)
    reconcile_commands.register(app)
    relay_commands.register(app)
    escrow_commands.register(app)
    record_commands.register(app)
    gateway_commands.register(app)
    datashare_commands.register(app)


def run() -> None:
    """Console entry point."""
    _register_commands()
    try:
        result = app(standalone_mode=False)
    except ConsortiaError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(EXIT_USER_ERROR)
    except TyperException as error:
        # A command-line mistake (unknown option, a value that is not a number, ...): one
        # line in the same format as every other user error, and where to look for help.
        format_message = getattr(error, "format_message", None)
        message = str(format_message() if callable(format_message) else error)
        if message:  # no message: help was shown for a bare command
            typer.echo(f"error: invalid_argument: {message} (see consortia --help)", err=True)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(result if isinstance(result, int) else 0)
