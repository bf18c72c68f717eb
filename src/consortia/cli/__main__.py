"""`python -m consortia.cli` is the `consortia` command."""

from consortia.cli.main import run

run()
