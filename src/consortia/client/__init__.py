"""The consortia SDK: build and sign transactions for any contract, submit them to a node,
wait for them to commit, and read receipts, accounts, blocks and state. Sync and async; the
async client also follows the chain (`subscribe_blocks`, `subscribe_events`).

    from consortia.client import Client, Signer
    with Client("http://127.0.0.1:8700") as node:
        alice = Signer.from_private_key("alice", private_key, node.chain())
        receipt = node.call(alice, "asset", "transfer", {"to": "bob", "amount": 5}, wait=True)

Everything the node refuses raises `ClientError` with the node's stable code. The SDK learns
the chain's id, suite, genesis hash and contract versions from the node (`/v1/status`) and
signs locally: a private key never leaves the caller's process.

Reads need not trust the node: with a `LightClient` built from the genesis file,
`node.transaction(tx_hash, verify=True)` returns a receipt only once it is proven against an
execution header certified by the validators of its epoch (`VerificationError` otherwise).
"""

from consortia.client.async_sdk import AsyncClient, Reconnect
from consortia.client.light import LightClient, VerificationError, verify_certificate
from consortia.client.sdk import (
    ChainInfo,
    Client,
    ClientError,
    Signer,
    TimeoutWaitingError,
)

__all__ = [
    "AsyncClient",
    "ChainInfo",
    "Client",
    "ClientError",
    "LightClient",
    "Reconnect",
    "Signer",
    "TimeoutWaitingError",
    "VerificationError",
    "verify_certificate",
]
