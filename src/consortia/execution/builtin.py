"""The contracts this build ships and deploys at genesis, in one list.

Owns `BUILTIN_CONTRACTS` and `SUPPORTED_PROTOCOL_VERSIONS`. Contract code is part of the
protocol: every node running protocol version v ships the same list, so whether a version's
code exists is the same answer on every node. Must never depend on the node's configuration
or environment: a list that differed between nodes would split the chain.
"""

from __future__ import annotations

from consortia.execution.contract import Contract
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.datashare import Datashare
from consortia.execution.contracts.governance import Governance
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.oracle import Oracle
from consortia.execution.contracts.receivable import Receivable
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.contracts.smallbank import SmallBank
from consortia.execution.contracts.system import System
from consortia.execution.contracts.vault import Vault

BUILTIN_CONTRACTS: list[type[Contract]] = [
    System,
    Identity,
    Governance,
    Asset,
    Regulator,
    Oracle,
    Vault,
    Receivable,
    Datashare,
    SmallBank,
]
SUPPORTED_PROTOCOL_VERSIONS = (1,)
