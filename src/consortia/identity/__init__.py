"""Identities of a consortium: keys at rest, who holds them, certificates, the genesis and
node configs.

    keystore      encrypted key files (Argon2id + the suite's AEAD), for every private key
    passphrase    where a passphrase comes from (file, environment, terminal; never argv)
    custody       who holds which passphrase: the CA, each node, each member (or demo custody)
    certificates  the consortium CA's and nodes' certificates, certificate requests
    tls           a node's TLS key and certificate, loaded into an ssl context
    authority     the offline CA's folder: create, issue, revoke
    requests      the signed key requests an institution sends out
    institution   `keys generate --institution`: an institution's own keys and requests
    assembly      `genesis build`: the genesis from gathered requests and certificates
    joining       `node configure`: a node folder joins a genesis
    genesis       load, check and hash genesis.json; epoch 0 from it
    config        a node's config.toml
    addresses     where nodes listen (free local ports, --hosts, --address)
    consortium    `consortia init`: all of the above on one machine, atomically
    inspection    check an existing consortium directory
    staging       build a directory in a hidden sibling, rename it into place; signals
    strict_json   JSON documents with each key at most once per object
    files, layout file helpers with fixed modes; the names of files and folders

Nothing in this package prints, logs or writes unencrypted a private key or a passphrase.
"""

from __future__ import annotations

from consortia.identity.consortium import (
    ConsortiumPlan,
    ConsortiumSummary,
    build_consortium,
    plan_consortium,
)
from consortia.identity.genesis import epoch_config, genesis_hash, load_genesis, node_id
from consortia.identity.inspection import inspect_consortium
from consortia.identity.keystore import load_key, read_key_header

__all__ = [
    "ConsortiumPlan",
    "ConsortiumSummary",
    "build_consortium",
    "epoch_config",
    "genesis_hash",
    "inspect_consortium",
    "load_genesis",
    "load_key",
    "node_id",
    "plan_consortium",
    "read_key_header",
]
