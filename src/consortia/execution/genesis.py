"""Build an engine's initial state from a genesis document.

Owns: putting the pieces of a new chain's state together. Each built-in contract contributes
its own initial state (`Contract.genesis_state`); `sys` gets a deployment record for every
contract (`system.new_deployment`), active at the version shipped; the genesis accounts get
their identity records (`identity_state.genesis_accounts`), nonce 0, even on a chain whose
contract list omits `identity`.

Must never: spell a contract's state key or record itself (each comes from the contract that
owns it), or overwrite what a contract's `genesis_state` wrote.
"""

from __future__ import annotations

from typing import Any

from consortia.crypto import suite as get_suite
from consortia.execution.committed import HISTORY_HEIGHTS_DEFAULT
from consortia.execution.contract import Contract
from consortia.execution.contracts import identity_state, system
from consortia.execution.engine import Engine
from consortia.execution.jmt_nodes import NodeReader
from consortia.execution.registry import ContractRegistry
from consortia.types.genesis import Genesis, genesis_hash


def genesis_writes(genesis: Genesis, contracts: list[type[Contract]]) -> dict[str, dict[str, Any]]:
    writes: dict[str, dict[str, Any]] = {system.CONTRACT: {}}
    for contract in contracts:
        deployment = system.new_deployment(contract.version)
        writes[system.CONTRACT][system.deployment_key(contract.name)] = deployment
        writes.setdefault(contract.name, {}).update(contract.genesis_state(genesis))
    accounts = writes.setdefault(identity_state.CONTRACT, {})
    for key, record in identity_state.genesis_accounts(genesis).items():
        accounts.setdefault(key, record)
    return writes


def engine_from_genesis(
    genesis: Genesis,
    contracts: list[type[Contract]],
    *,
    supported_protocols: tuple[int, ...] = (1,),
    initialise: bool = True,
    nodes: NodeReader | None = None,
    history_heights: int = HISTORY_HEIGHTS_DEFAULT,
) -> Engine:
    """An engine at height 0 for this genesis (with its genesis state unless `initialise` is
    off: a node restarting restores its committed state instead). When the `sys` contract is
    among `contracts`, the engine refuses to execute blocks under a protocol version it does
    not support. `nodes` and `history_heights` are the engine's (its state tree's node store
    and how many heights it keeps)."""
    has_system = any(c.name == system.CONTRACT for c in contracts)
    guard = system.protocol_check if has_system else None
    engine = Engine(
        get_suite(genesis.suite),
        genesis.chain_id,
        ContractRegistry(contracts),
        genesis_hash=genesis_hash(genesis),
        supported_protocols=supported_protocols,
        protocol_guard=guard,
        nodes=nodes,
        history_heights=history_heights,
    )
    if initialise:
        engine.initialise(genesis_writes(genesis, contracts))
    return engine
