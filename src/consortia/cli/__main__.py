"""`python -m consortia.cli` is the `consortia` command."""

from consortia.cli.main import run

if __name__ == "__main__":  # not when a spawned process (consortia bench) imports it
    run()
