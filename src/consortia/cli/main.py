"""The `consortia` command.

Every user mistake becomes one line on stderr, `error: <code>: <message>`, and exit status 2;
no traceback is shown for a ConsortiaError. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

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
    from consortia.cli import identity_commands, sim_commands

    identity_commands.register(app)
    sim_commands.register(app)


def run() -> None:
    """Console entry point."""
    _register_commands()
    try:
        app()
    except ConsortiaError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)
