"""The contract code this build ships, by name and version.

Owns: the map from (name, version) to the one instance of that code. Shipping code is not
deploying it: which version of a contract runs on a chain, and whether it is frozen or
retired, is chain state (`sys`'s deployment records) that only governance changes. A node that
lacks the code of a version the chain activated cannot execute it and must stop
(`UnknownContractCodeError`).

Must never: hold state of its own beyond the code, or decide which version runs (the chain
does). Contracts are stateless objects; the engine hands a running block a read-only view of
`code`, never the registry itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from consortia.errors import ConsortiaError
from consortia.execution.contract import Contract

Code = Mapping[tuple[str, int], Contract]


class UnknownContractCodeError(ConsortiaError):
    code = "unknown_contract_code"


class ContractRegistry:
    def __init__(self, contracts: list[type[Contract]]) -> None:
        instances: dict[tuple[str, int], Contract] = {}
        for contract in contracts:
            key = (contract.name, contract.version)
            assert key not in instances, f"two builds of {key}"
            instances[key] = contract()
        self.code: Code = MappingProxyType(instances)

    def has(self, name: str, version: int) -> bool:
        return (name, version) in self.code

    def versions(self, name: str) -> list[int]:
        return sorted(version for (n, version) in self.code if n == name)

    def instance(self, name: str, version: int) -> Contract:
        return code_for(self.code, name, version)


def code_for(code: Code, name: str, version: int) -> Contract:
    """The shipped code of `name` at `version`; a node without it must stop, not diverge."""
    instance = code.get((name, version))
    if instance is None:
        raise UnknownContractCodeError(
            f"this build has no code for {name} version {version}; upgrade the node"
        )
    return instance
