"""consortia.cluster: a local consortium on one machine, one background process per
validator, for demos and for tests against real processes (the library under `consortia
cluster`, `consortia tx` and `make run`).

    home.py       the folder: its nodes, logs, pid files and demo passphrase
    setup.py      a new cluster with demo accounts; starting and stopping all of it
    processes.py  one node process: start detached, find again, stop, wait until it serves
    accounts.py   which key signs for an account name; `--arg` values of a contract call
    workload.py   the demo workload: transfers and a receivable's whole life
    bench.py      `consortia bench`: open-loop load from client processes, measured
    monitor.py    what the dashboard shows, read from the nodes' APIs

This package runs nodes as separate processes and talks to them only through their HTTP API:
it must never import the node's internals, and never put a passphrase on a command line.
"""
