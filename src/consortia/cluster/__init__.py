"""consortia.cluster: a local consortium on one machine, one background process per
validator, for demos and for tests against real processes (the library under `consortia
cluster`, `consortia tx` and `make run`).

    home.py       the folder: its nodes, logs, pid files and demo passphrase
    setup.py      a new cluster with demo accounts; starting and stopping all of it
    processes.py  one node process: start detached, find again, stop, wait until it serves
    accounts.py   which key signs for an account name; `--arg` values of a contract call
    workload.py   the demo workload: transfers and a receivable's whole life
    bench.py      `consortia bench`: client processes started, the chain followed, the report
    bench_config.py  what a run is asked to do; bench_report.py what it reports, /proc readings
    bench_workloads.py  the workloads' calls: transfer, smallbank, receivable flows, query
    bench_client.py  a client process sending transactions (pre-signed, open loop or window)
    bench_flows.py   a client process driving receivable flows, step after committed step
    bench_reads.py   a client process reading accounts (the query workload)
    monitor.py    what the dashboard shows, read from the nodes' APIs

This package runs nodes as separate processes and talks to them only through their HTTP API:
it must never import the node's internals, and never put a passphrase on a command line.
"""
