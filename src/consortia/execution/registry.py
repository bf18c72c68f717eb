"""The contract code this build ships, by name and version.

Shipping code is not deploying it: which version of a contract runs on a chain, and whether it
is frozen or retired, is chain state (`sys/contract/<name>`) that only governance changes. A
node that lacks the code of a version the chain activated cannot execute it and must stop.
"""

from __future__ import annotations

from consortia.errors import ConsortiaError
from consortia.execution.contract import Contract


class UnknownContractCodeError(ConsortiaError):
    code = "unknown_contract_code"


class ContractRegistry:
    def __init__(self, contracts: list[type[Contract]]) -> None:
        self._classes: dict[tuple[str, int], type[Contract]] = {}
        self._instances: dict[tuple[str, int], Contract] = {}
        for contract in contracts:
            key = (contract.name, contract.version)
            assert key not in self._classes, f"two builds of {key}"
            self._classes[key] = contract

    def has(self, name: str, version: int) -> bool:
        return (name, version) in self._classes

    def versions(self, name: str) -> list[int]:
        return sorted(version for (n, version) in self._classes if n == name)

    def instance(self, name: str, version: int) -> Contract:
        key = (name, version)
        instance = self._instances.get(key)
        if instance is None:
            contract = self._classes.get(key)
            if contract is None:
                raise UnknownContractCodeError(
                    f"this build has no code for {name} version {version}; upgrade the node"
                )
            instance = self._instances[key] = contract()
        return instance
