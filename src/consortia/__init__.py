"""consortia: a permissioned BFT ledger for banks, a central bank and the firms they serve.

The package is layered (see docs/ARCHITECTURE.md): pure cores (consensus, execution, mempool)
never touch sockets, clocks, randomness or disks; the node is the only place where I/O meets them.
"""

__version__ = "0.1.0"

# The protocol version this build speaks. A network runs one version at a time; governance
# schedules upgrades at an activation height.
PROTOCOL_VERSION = 1
