"""The names of the files and directories `consortia init` creates, in one place.

    DIR/genesis.json, DIR/ca.crt, DIR/ca.key (the CA's key: keep it offline)
    DIR/nodeI/config.toml, genesis.json, ca.crt, consensus.key, tls.crt, tls.key,
              accounts/treasury.key, data/

This module only names things; it must never touch the file system.
"""

from __future__ import annotations

from typing import Final

GENESIS_FILE: Final = "genesis.json"
CA_CERTIFICATE_FILE: Final = "ca.crt"
CA_KEY_FILE: Final = "ca.key"
CONFIG_FILE: Final = "config.toml"
CONSENSUS_KEY_FILE: Final = "consensus.key"
TLS_CERTIFICATE_FILE: Final = "tls.crt"
TLS_KEY_FILE: Final = "tls.key"
ACCOUNTS_DIR: Final = "accounts"
TREASURY_KEY_FILE: Final = "accounts/treasury.key"
DATA_DIR: Final = "data"
DEMO_PASSPHRASE_FILE: Final = ".demo-passphrase"  # noqa: S105 - a file name, not a secret


def node_dir_name(index: int) -> str:
    """The directory (and node name) of node `index`: node0, node1, ..."""
    return f"node{index}"


def member_name(index: int) -> str:
    """The institution that runs node `index`: bank-0, bank-1, ..."""
    return f"bank-{index}"
