"""The node: the only place where I/O meets the pure cores.

One process per validator: it drives the unchanged consensus `Replica` and execution `Engine`
over the network (`consortia.net`), the durable store (`consortia.storage`) and the mempool,
and serves the HTTP API (`consortia.api`). The driver contracts docs/consensus.md states are
honoured here: a `Persist` is durable before `PersistDone`, `ServeBlocks` is answered from
the store, epoch proofs and the last commit proof are kept across restarts.
"""
