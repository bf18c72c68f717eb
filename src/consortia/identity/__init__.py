"""Identities of a consortium: keys at rest, certificates, the genesis and node configs.

    keystore      encrypted key files (Argon2id + the suite's AEAD)
    passphrase    where the passphrase comes from (file, environment, terminal; never argv)
    pkcs8         scrypt-encrypted PKCS#8 PEM for TLS keys, as Python's ssl module loads them
    certificates  the consortium CA and the nodes' mutual-TLS certificates
    genesis       load, check and hash genesis.json; epoch 0 from it
    config        a node's config.toml
    addresses     where nodes listen (free local ports, or --hosts)
    consortium    `consortia init`: plan, then build atomically
    inspection    check an existing consortium directory

Nothing in this package prints, logs or writes unencrypted a private key or a passphrase.
"""

from __future__ import annotations

from consortia.identity.consortium import (
    ConsortiumPlan,
    ConsortiumSummary,
    KeyCosts,
    build_consortium,
    plan_consortium,
)
from consortia.identity.genesis import epoch_config, genesis_hash, load_genesis, node_id
from consortia.identity.inspection import inspect_consortium
from consortia.identity.keystore import load_key, read_key_header

__all__ = [
    "ConsortiumPlan",
    "ConsortiumSummary",
    "KeyCosts",
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
