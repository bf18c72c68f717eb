"""A node's `config.toml`: who the node is, where its keys are, and whom it talks to.

Paths in the file are relative to the directory that holds it (absolute paths also work), so a
node directory can be moved or sent to its institution as a whole. The config names the genesis
hash the node expects; the node refuses any genesis document with another hash.

This module holds no secrets and must never put one in a config: keys stay in their encrypted
files and the passphrase comes from elsewhere (see `consortia.identity.passphrase`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Final

import msgspec
import tomli_w
from msgspec import Meta

from consortia.errors import ConfigError
from consortia.identity.files import read_bounded, write_public_file
from consortia.types.genesis import Address, HexHash
from consortia.types.primitives import ChainId, Name
from consortia.types.state_proof import (
    STATE_HISTORY_HEIGHTS_DEFAULT,
    STATE_HISTORY_HEIGHTS_MAX,
    STATE_HISTORY_HEIGHTS_MIN,
)

CONFIG_FILE_NAME: Final = "config.toml"
CONFIG_SIZE_MAX: Final = 1024 * 1024
RelativePath = Annotated[str, Meta(min_length=1, max_length=4096)]
ListenAddress = Annotated[str, Meta(min_length=3, max_length=255, pattern=r"^[^\s]+:[0-9]{1,5}\Z")]


class NodeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name
    node_id: HexHash
    member: Name
    data_dir: RelativePath
    # How many heights back state reads and proofs are answered; older state is pruned.
    state_history_heights: Annotated[
        int, Meta(ge=STATE_HISTORY_HEIGHTS_MIN, le=STATE_HISTORY_HEIGHTS_MAX)
    ] = STATE_HISTORY_HEIGHTS_DEFAULT


class ChainSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: ChainId
    suite: Annotated[str, Meta(min_length=1, max_length=16)]
    genesis: RelativePath
    genesis_hash: HexHash


class KeysSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    consensus_key: RelativePath
    tls_certificate: RelativePath
    tls_key: RelativePath
    ca_certificate: RelativePath


class NetworkSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: ListenAddress  # where the consensus server binds
    advertise: Address  # where peers reach it, as recorded in the genesis
    api_listen: ListenAddress


class Peer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    node_id: HexHash
    name: Name
    address: Address


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    node: NodeSection
    chain: ChainSection
    keys: KeysSection
    network: NetworkSection
    peers: Annotated[list[Peer], Meta(max_length=1024)]


def config_toml(config: NodeConfig) -> bytes:
    """`config` as TOML text."""
    return tomli_w.dumps(msgspec.to_builtins(config)).encode("utf-8")


def write_node_config(path: Path, config: NodeConfig) -> None:
    """Write `config` to `path` (which must not exist)."""
    write_public_file(path, config_toml(config))


def parse_node_config(data: bytes, source: str = CONFIG_FILE_NAME) -> NodeConfig:
    """The config in the TOML `data`; ConfigError for bad TOML or a schema violation."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{source} is not valid TOML: {error}") from None
    try:
        return msgspec.convert(document, type=NodeConfig)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{source} is not a valid node config: {error}") from None


def load_node_config(path: Path) -> NodeConfig:
    """The node config at `path`."""
    return parse_node_config(read_bounded(path, CONFIG_SIZE_MAX, ConfigError, "config"), str(path))


def resolve(config_path: Path, relative: str) -> Path:
    """A path named in the config at `config_path`, resolved against the config's directory."""
    return config_path.parent / relative
