"""The names of the files and directories consortia creates, in one place.

An institution's folder (made by `consortia keys generate --institution DIR`; it never leaves
the institution):

    DIR/accounts/treasury.key                 the member's account key (member passphrase)
    DIR/NODE/consensus.key, tls.key, data/    a node's keys (node passphrase)
    DIR/NODE/config.toml, genesis.json, ca.crt, tls.crt    written by `consortia node configure`
    DIR/public/MEMBER.member.json, NODE.node.json          what the institution sends out

The offline CA's folder (`consortia ca init --out CA`):

    CA/ca.key (CA passphrase), CA/ca.crt, CA/issued/SERIAL.crt, CA/ca.crl (after a revocation)

`consortia init --out DIR` puts all of these on one machine for a test network:

    DIR/genesis.json, DIR/ca.crt, DIR/ca/ (the CA's folder), DIR/bank-I/ (institution folders,
    node I in DIR/bank-I/nodeI/)

`consortia cluster up --home DIR` adds a local network's demo accounts and its processes:

    DIR/accounts/NAME.key     a demo account's key (alice, bob, ...; its sponsor's passphrase)
    DIR/logs/nodeI.log        what node I wrote (appended at each start)
    DIR/run/nodeI.pid         the process id of node I while it runs

This module only names things; it must never touch the file system.
"""

from __future__ import annotations

from typing import Final

GENESIS_FILE: Final = "genesis.json"
CA_DIR: Final = "ca"
CA_CERTIFICATE_FILE: Final = "ca.crt"
CA_KEY_FILE: Final = "ca.key"
CA_CRL_FILE: Final = "ca.crl"
CA_ISSUED_DIR: Final = "issued"
CONFIG_FILE: Final = "config.toml"
CONSENSUS_KEY_FILE: Final = "consensus.key"
TLS_CERTIFICATE_FILE: Final = "tls.crt"
TLS_KEY_FILE: Final = "tls.key"
ACCOUNTS_DIR: Final = "accounts"
KEY_SUFFIX: Final = ".key"
TREASURY_ACCOUNT: Final = "treasury"
DATA_DIR: Final = "data"
PUBLIC_DIR: Final = "public"
MEMBER_REQUEST_SUFFIX: Final = ".member.json"
NODE_REQUEST_SUFFIX: Final = ".node.json"
CERTIFICATE_SUFFIX: Final = ".crt"
DEMO_PASSPHRASE_FILE: Final = ".demo-passphrase"  # noqa: S105 - a file name, not a secret
LOGS_DIR: Final = "logs"
RUN_DIR: Final = "run"
DEMO_ACCOUNTS: Final = ("alice", "bob", "carol", "dave")


def node_dir_name(index: int) -> str:
    """The directory (and node name) of node `index`: node0, node1, ..."""
    return f"node{index}"


def member_name(index: int) -> str:
    """The institution that runs node `index`: bank-0, bank-1, ..."""
    return f"bank-{index}"


def account_id(member: str, account: str) -> str:
    """The ledger id of a member's account: `bank-0.treasury`."""
    return f"{member}.{account}"


def account_key_file(account: str) -> str:
    """Where an institution keeps the key of its account `account`, relative to its folder."""
    return f"{ACCOUNTS_DIR}/{account}{KEY_SUFFIX}"


def member_request_file(member: str) -> str:
    return f"{member}{MEMBER_REQUEST_SUFFIX}"


def node_request_file(node: str) -> str:
    return f"{node}{NODE_REQUEST_SUFFIX}"


def node_certificate_file(node: str) -> str:
    return f"{node}{CERTIFICATE_SUFFIX}"
