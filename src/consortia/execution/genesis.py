"""Build an engine's initial state from a genesis document.

Each built-in contract contributes its own initial state (`Contract.genesis_state`); the
system namespace records which contracts are deployed, at which version, and that they are
active. Accounts named in the genesis exist from height 0 with nonce 0.
"""

from __future__ import annotations

from typing import Any

from consortia.crypto import suite as get_suite
from consortia.execution.contract import Contract
from consortia.execution.contracts.system import protocol_check
from consortia.execution.engine import ACCOUNT_CONTRACT, SYSTEM_CONTRACT, Engine
from consortia.execution.registry import ContractRegistry
from consortia.types.genesis import Genesis


def genesis_writes(genesis: Genesis, contracts: list[type[Contract]]) -> dict[str, dict[str, Any]]:
    writes: dict[str, dict[str, Any]] = {SYSTEM_CONTRACT: {}}
    for contract in contracts:
        writes[SYSTEM_CONTRACT][f"contract/{contract.name}"] = {
            "versions": [contract.version],
            "active_version": contract.version,
            "status": "active",
        }
        writes.setdefault(contract.name, {}).update(contract.genesis_state(genesis))
    accounts = writes.setdefault(ACCOUNT_CONTRACT, {})
    for account in genesis.accounts:
        accounts.setdefault(
            f"account/{account.id}",
            {
                "public_key": account.public_key,
                "sponsor": account.sponsor,
                "status": "active",
                "nonce": 0,
            },
        )
    return writes


def engine_from_genesis(
    genesis: Genesis,
    contracts: list[type[Contract]],
    *,
    supported_protocols: tuple[int, ...] = (1,),
) -> Engine:
    """An engine at height 0 for this genesis. When the `sys` contract is among `contracts`,
    the engine refuses to execute blocks under a protocol version it does not support."""
    guard = protocol_check if any(c.name == SYSTEM_CONTRACT for c in contracts) else None
    engine = Engine(
        get_suite(genesis.suite),
        genesis.chain_id,
        ContractRegistry(contracts),
        supported_protocols=supported_protocols,
        protocol_guard=guard,
    )
    engine.initialise(genesis_writes(genesis, contracts))
    return engine
